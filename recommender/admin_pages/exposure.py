"""The "Long-tail exposure" admin page: who got shown, who sold, how fair it was, what promotions did.

Everything is read from the count tables (:mod:`recommender.reports.queries`), never from raw
events, so the page stays fast as events grow: one query for the per-item sums of the range
(weekly rollup plus the loose days), one read of the catalog, and small per-day tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from ..reports import queries
from .base import DateRange, Table, parse_range, percent, render_page, staff_page
from .charts import PALETTE, Chart, Series, bar_chart, fmt_number, line_chart, lorenz_chart

NEVER_SHOWN_ON_PAGE = 100
TITLE = "Long-tail exposure"


@dataclass
class Card:
    """One headline figure: its label, the value as shown, and the raw value (``data-value``, for tests)."""

    key: str
    label: str
    text: str
    value: Any = None
    note: str = ""
    warn: bool = False


def _days(span: DateRange) -> list:
    return [span.start + timedelta(days=n) for n in range(span.days)]


def fill_summary(state: dict[str, Any], gaps: dict[str, Any]) -> tuple[str, str, bool]:
    """(card text, explanation, warn) of the aggregation job's fill state over the range."""
    text = f"{state['filled']} of {state['days']} days"
    parts = []
    if state["partial"]:
        parts.append(f"{state['partial']} partial (filled while the day was running)")
    if gaps["before_data"]:
        parts.append(f"{gaps['before_data']} before the first event")
    if gaps["future"]:
        parts.append(f"{gaps['future']} still to come")
    if state["pending"]:
        parts.append(f"{state['pending']} re-opened by late events")
    if gaps["missing"]:
        parts.append(f"{len(gaps['missing'])} not aggregated yet")
    note = "; ".join(parts)
    warn = bool(state["pending"] or gaps["missing"])
    if warn:
        note += (". Figures for those days are missing or stale until the worker's aggregate_reports job "
                 "(every 15 minutes) or `python manage.py aggregate_reports` has filled them.")
    return text, note, warn


def exposure_data(span: DateRange, never_shown_limit: int | None = NEVER_SHOWN_ON_PAGE) -> dict[str, Any]:
    """Cards, charts and tables of the page for ``span``, from the count tables."""
    start, end = span.start, span.end
    # One pass over the range's item rows and one read of the catalog feed the coverage, Gini,
    # Lorenz curve, never-shown items and category table; per-day figures come from day rows.
    totals = queries.item_totals(start, end)
    catalog = queries.catalog_items()
    report = queries.exposure_report(start, end, totals=totals, n_catalog=catalog.n_eligible)
    days = _days(span)
    labels = [d.isoformat() for d in days]

    daily = {r["day"]: r for r in queries.daily_tail_shares(start, end)}
    tail_chart = line_chart(
        "tail-share-daily", "Tail share per day",
        labels,
        [
            Series("impressions", [daily.get(d, {}).get("tail_share_of_impressions") for d in days]),
            # Conversions last: drawn on top where they equal the share of all purchases.
            Series("all purchases", [daily.get(d, {}).get("tail_share_of_all_purchases") for d in days], PALETTE[2]),
            Series("conversions (recommended purchases)", [daily.get(d, {}).get("tail_share_of_conversions") for d in days],
                   PALETTE[1]),
        ],
        value_format="percent", y_max=1.0, x_label="day", y_label="tail share",
        note="Share that went to long-tail items each day: of every impression, of all purchases, and of the "
             "purchases made from a recommendation list. Gaps: nothing of that kind that day.",
    )
    coverage = {r["day"]: r for r in queries.daily_coverage(start, end, n_catalog=catalog.n_eligible)}
    coverage_chart = line_chart(
        "coverage-daily", "Catalog coverage per day",
        labels,
        [Series("share of catalog shown", [coverage[d]["catalog_coverage"] if d in coverage else None for d in days])],
        value_format="percent", x_label="day", y_label="catalog shown",
        note=f"Items shown at least once that day, out of the {report['catalog_items']:,} items recommendable today.",
    )
    lorenz = lorenz_chart(
        "lorenz", "Lorenz curve of exposure", report["lorenz"], report["gini_of_exposure"],
        note="The further the curve sags below the diagonal, the more impressions went to few items. "
             "Gini 0: every item shown equally; close to 1: all on one item.",
    )

    never = queries.items_never_shown(start, end, limit=never_shown_limit, totals=totals, catalog=catalog)
    for row in never["items"]:
        row["created_at"] = row["created_at"].strftime("%Y-%m-%d %H:%M")
    never_table = Table(
        "never-shown", [("external_id", "item id"), ("title", "title"), ("category", "category"), ("created_at", "added")],
        never["items"], title=f"Items never shown ({never['count']:,})",
        caption=(f"Recommendable items without a single impression in the range, oldest first"
                 + (f"; the first {never_shown_limit} are listed, the CSV has all." if never_shown_limit
                    and never["count"] > never_shown_limit else ".")),
    )
    category_table = Table(
        "categories",
        [("category", "category"), ("catalog_items", "items"), ("items_shown", "shown"), ("impressions", "impressions"),
         ("tail_share_of_impressions", "tail share"), ("clicks", "clicks"), ("ctr", "CTR"), ("purchases", "purchases"),
         ("conversion_rate", "conversion"), ("revenue", "revenue")],
        queries.category_table(start, end, totals=totals, catalog=catalog), title="Exposure and sales per category",
        caption="Current category of each item. Clicks, purchases and rates: recommended items only; revenue: every purchase.",
        formats={"tail_share_of_impressions": "percent", "ctr": "percent", "conversion_rate": "percent",
                 "impressions": "number", "revenue": "number"},
    )
    for row in category_table.rows:
        row["category"] = row["category"] or "(none)"

    # Days after today have no counts yet: a running promotion is measured up to today.
    effects = queries.promotion_effects(start, min(end, timezone.now().date() + timedelta(days=1)))
    promo_table = Table(
        "promotions",
        [("promotion", "#"), ("target", "target"), ("policy", "policy"), ("boost", "boost"),
         ("during_from", "from"), ("days", "days"), ("before_from", "compared with days from"),
         ("impressions_per_day_before", "impressions/day before"), ("impressions_per_day_during", "impressions/day during"),
         ("lift_impressions", "impressions change"),
         ("clicks_per_day_before", "clicks/day before"), ("clicks_per_day_during", "clicks/day during"),
         ("purchases_per_day_before", "purchases/day before"), ("purchases_per_day_during", "purchases/day during"),
         ("lift_purchases", "purchases change"),
         ("revenue_per_day_before", "revenue/day before"), ("revenue_per_day_during", "revenue/day during")],
        effects, title="Promotions in numbers",
        caption="The promoted items' counts per day while the promotion ran (inside this range) against the same "
                "number of days just before it started. A promotion without a start has nothing to compare with.",
        formats={"lift_impressions": "percent", "lift_purchases": "percent",
                 **{f"{k}_per_day_{w}": "number" for k in queries.PROMOTION_MEASURES for w in ("before", "during")}},
    )
    promo_chart = _promotion_chart(effects) if effects else None

    state = report["fill_state"]
    gaps = queries.missing_days(start, end, timezone.now().date())
    fill_text, fill_note, fill_warn = fill_summary(state, gaps)
    totals = queries.tail_totals(start, end)
    cards = [
        Card("impressions", "impressions", fmt_number(totals["impressions"]), totals["impressions"],
             f"{totals['recommended_impressions']:,} in {report['lists_served']:,} recommendation lists"),
        Card("tail_share_of_impressions", "tail share of impressions", percent(totals["tail_share_of_impressions"]),
             totals["tail_share_of_impressions"]),
        Card("tail_share_of_conversions", "tail share of conversions", percent(totals["tail_share_of_conversions"]),
             totals["tail_share_of_conversions"], f"{totals['conversions']:,} purchases from recommendations"),
        Card("tail_share_of_all_purchases", "tail share of all purchases",
             percent(totals["tail_share_of_all_purchases"]), totals["tail_share_of_all_purchases"],
             f"{totals['all_purchases']:,} purchases"),
        Card("catalog_coverage", "catalog coverage", percent(report["catalog_coverage"]), report["catalog_coverage"],
             f"{report['items_shown']:,} of {report['catalog_items']:,} items shown"),
        Card("gini_of_exposure", "Gini of exposure", f"{report['gini_of_exposure']:.3f}", report["gini_of_exposure"]),
        Card("items_never_shown", "items never shown", fmt_number(never["count"]), never["count"]),
        Card("fill_state", "days aggregated", fill_text, state["filled"], fill_note, fill_warn),
    ]
    charts = [tail_chart, coverage_chart, lorenz] + ([promo_chart] if promo_chart else [])
    return {
        "cards": cards,
        "tail_chart": tail_chart,
        "coverage_chart": coverage_chart,
        "lorenz": lorenz,
        "promo_chart": promo_chart,
        "never_table": never_table,
        "category_table": category_table,
        "promo_table": promo_table,
        "fill_warning": fill_note if fill_warn else "",
        "tables": [c.table for c in charts] + [never_table, category_table, promo_table],
    }


def _promotion_chart(effects: list[dict[str, Any]]) -> Chart:
    """Impressions per day of each promotion's items, before (grey) and during (blue)."""
    labels, values, colors = [], [], []
    for row in effects:
        name = f"#{row['promotion']} {row['target']}"
        labels += [f"{name} · before", f"{name} · during"]
        values += [row["impressions_per_day_before"], row["impressions_per_day_during"]]
        colors += ["#9aa5b1", "#2f6db5"]
    return bar_chart(
        "promotion-impressions", "Impressions per day of promoted items, before and during", labels, values,
        value_label="impressions per day", colors=colors,
        note="Grey: the same number of days before the promotion started; blue: while it ran. '–': no before period.",
    )


@staff_page
def exposure_page(request: HttpRequest) -> HttpResponse:
    """Long-tail exposure over a date range, from the daily count tables."""
    span = parse_range(request)
    # The page lists the oldest never-shown items; their CSV export has all of them.
    limit = None if request.GET.get("csv") == "never-shown" else NEVER_SHOWN_ON_PAGE
    data = exposure_data(span, never_shown_limit=limit)
    return render_page(request, "recommender/admin/exposure.html", TITLE, data.pop("tables"), range=span, **data)
