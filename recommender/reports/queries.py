"""Report queries over the daily count tables (never raw events); day ranges are [start, end) UTC dates.

The catalog (``Item``) is read for what the counts cannot know: items never shown, catalog
size, and each item's current category.

Per-item figures over a range (:func:`item_totals`) read whole weeks from the weekly rollup
and only the days at either end from the day rows; what follows from them (coverage, Gini,
Lorenz curve, never-shown items, the category table) is worked out in numpy, so a report
makes one pass over a few hundred thousand rows however the events grew. Per-day figures come
from the per-segment rollup and ``ReportDay``. Nothing is cached: every request reads what
the aggregation job last committed.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from ..models import DailyItemCount, DailySegmentCount, Item, Promotion, ReportDay, Segment
from ..models.reports import WeeklyItemCount

TAIL = Q(segment=Segment.TAIL)
SUMS = ("impressions", "clicks", "add_to_carts", "purchases", "revenue")


def _range(start: date, end: date, model: type = DailyItemCount) -> QuerySet:
    """Count rows of [start, end); ``DailySegmentCount`` for totals (a few rows a day), items otherwise."""
    if end < start:
        raise ValueError(f"The report range ends ({end}) before it starts ({start}); swap them.")
    return model.objects.filter(day__gte=start, day__lt=end)


def _share(part: float | None, whole: float | None) -> float | None:
    return round(float(part or 0) / float(whole), 6) if whole else None


def _sums(**filters: Q) -> dict[str, Sum]:
    """Sum of every count column as ``sum_<column>``; the prefix keeps aggregates from shadowing columns."""
    return {f"sum_{k}": Sum(k, filter=filters.get(k)) for k in SUMS}


def _rates(row: dict[str, Any]) -> dict[str, Any]:
    """The summed counts of a row of ``_sums`` and the rates per impression."""
    counts = {k: row.get(f"sum_{k}") or 0 for k in SUMS}
    imp = counts["impressions"]
    return {
        **counts,
        "ctr": _share(counts["clicks"], imp),
        "add_to_cart_rate": _share(counts["add_to_carts"], imp),
        "conversion_rate": _share(counts["purchases"], imp),
    }


def daily_tail_shares(start: date, end: date) -> list[dict[str, Any]]:
    """Per day: impressions and their tail share; recommended purchases and all purchases and their tail shares."""
    rows = (
        _range(start, end, DailySegmentCount)
        .values("day")
        .annotate(
            n_impressions=Sum("impressions"),
            tail_impressions=Sum("impressions", filter=TAIL),
            conversions=Sum("purchases", filter=Q(attributed=True)),
            tail_conversions=Sum("purchases", filter=Q(attributed=True) & TAIL),
            all_purchases=Sum("purchases"),
            tail_all_purchases=Sum("purchases", filter=TAIL),
        )
        .order_by("day")
    )
    return [
        {
            "day": r["day"],
            "impressions": r["n_impressions"] or 0,
            "tail_share_of_impressions": _share(r["tail_impressions"], r["n_impressions"]),
            "conversions": r["conversions"] or 0,
            "tail_share_of_conversions": _share(r["tail_conversions"], r["conversions"]),
            "all_purchases": r["all_purchases"] or 0,
            "tail_share_of_all_purchases": _share(r["tail_all_purchases"], r["all_purchases"]),
        }
        for r in rows
    ]


def item_exposure(start: date, end: date) -> dict[int, int]:
    """Impressions per shown item pk over the range."""
    totals = item_totals(start, end)
    return dict(zip(totals.item[totals.shown].tolist(), totals.impressions[totals.shown].tolist()))


@dataclass(frozen=True)
class ItemTotals:
    """Per-item sums over a day range: one entry per item with count rows in it, (n,) int64 arrays.

    ``clicks``, ``add_to_carts`` and ``purchases`` are those of recommendation lists (as CTR
    is); ``impressions``, ``tail_impressions`` (rows of days the item was tail) and
    ``revenue_cents`` count every event.
    """

    item: np.ndarray
    impressions: np.ndarray
    tail_impressions: np.ndarray
    clicks: np.ndarray
    add_to_carts: np.ndarray
    purchases: np.ndarray
    revenue_cents: np.ndarray

    @property
    def shown(self) -> np.ndarray:
        """(n,) bool: the item had at least one impression in the range."""
        return self.impressions > 0


_ATTRIBUTED = Q(attributed=True)
_TOTAL_COLUMNS = ("impressions", "tail_impressions", "clicks", "add_to_carts", "purchases")


def whole_weeks(start: date, end: date) -> tuple[tuple[date, date] | None, list[tuple[date, date]]]:
    """Split [start, end) into the whole weeks inside it (Mondays [first, last)) and the days left at each end."""
    first = start + timedelta(days=(7 - start.weekday()) % 7)
    last = end - timedelta(days=end.weekday())
    if first >= last:
        return None, [(start, end)] if start < end else []
    return (first, last), [(a, b) for a, b in ((start, first), (last, end)) if a < b]


def item_totals(start: date, end: date) -> ItemTotals:
    """Every per-item figure the exposure report needs, each item row read once.

    Whole weeks come from :class:`WeeklyItemCount` (one row per item and week), the days at
    either end from the day rows: a 90-day range reads ~13 week rows per item instead of
    ~90 days x variants x attribution.
    """
    if end < start:
        raise ValueError(f"The report range ends ({end}) before it starts ({start}); swap them.")
    weeks, days = whole_weeks(start, end)
    parts, params = [], []
    if weeks:
        parts.append(_WEEK_ROWS.format(table=WeeklyItemCount._meta.db_table))
        params += list(weeks)
    if days:
        parts.append(_DAY_ROWS.format(
            table=DailyItemCount._meta.db_table, days=" OR ".join(["(day >= %s AND day < %s)"] * len(days))
        ))
        params += [d for span in days for d in span]
    if not parts:  # an empty range
        return ItemTotals(*(np.zeros(0, dtype=np.int64) for _ in range(len(_TOTAL_COLUMNS) + 2)))
    # Raw SQL: plain integers back (revenue as whole cents, which add up exactly), no ORM
    # converters on tens of thousands of rows; the same SQL runs on PostgreSQL and SQLite.
    with connection.cursor() as cur:
        cur.execute(_ITEM_SUMS.format(rows=" UNION ALL ".join(parts)), params)
        rows = cur.fetchall()
    table = np.array(rows, dtype=np.int64).reshape(len(rows), len(_TOTAL_COLUMNS) + 2)
    return ItemTotals(table[:, 0], *(table[:, 1 + n] for n in range(len(_TOTAL_COLUMNS) + 1)))


_WEEK_ROWS = """
SELECT item_id, impressions, tail_impressions, clicks, add_to_carts, purchases, revenue
FROM {table} WHERE week >= %s AND week < %s"""
_DAY_ROWS = """
SELECT item_id, impressions, CASE WHEN segment = 'tail' THEN impressions ELSE 0 END AS tail_impressions,
    CASE WHEN attributed THEN clicks ELSE 0 END AS clicks,
    CASE WHEN attributed THEN add_to_carts ELSE 0 END AS add_to_carts,
    CASE WHEN attributed THEN purchases ELSE 0 END AS purchases, revenue
FROM {table} WHERE {days}"""
# Columns in the order of ItemTotals: item, the _TOTAL_COLUMNS, revenue in cents.
_ITEM_SUMS = """
SELECT item_id, CAST(SUM(impressions) AS BIGINT), CAST(SUM(tail_impressions) AS BIGINT),
    CAST(SUM(clicks) AS BIGINT), CAST(SUM(add_to_carts) AS BIGINT), CAST(SUM(purchases) AS BIGINT),
    CAST(ROUND(SUM(revenue) * 100) AS BIGINT)
FROM ({rows}) AS item_rows
GROUP BY item_id"""


@dataclass(frozen=True)
class Catalog:
    """Every item (deleted ones too) oldest first, by (created_at, pk): pks, current categories, eligibility."""

    item: np.ndarray  # (m,) int64 pks
    category: list[str]  # (m,) current category of each item
    eligible: np.ndarray  # (m,) bool: may be recommended today (``Item.objects.eligible()``)

    @property
    def n_eligible(self) -> int:
        return int(self.eligible.sum())


def catalog_items() -> Catalog:
    """The catalog as arrays: two queries, whatever the range."""
    rows = list(Item.objects.order_by("created_at", "pk").values_list("pk", "category"))
    pks = np.array([r[0] for r in rows], dtype=np.int64)
    eligible = np.array(Item.objects.eligible().values_list("pk", flat=True), dtype=np.int64)
    return Catalog(pks, [r[1] for r in rows], np.isin(pks, eligible))


def _coverage(shown: int, n_catalog: int) -> dict[str, Any]:
    coverage = _share(min(shown, n_catalog), n_catalog)
    return {"catalog_items": n_catalog, "items_shown": shown, "catalog_coverage": coverage}


def catalog_coverage(start: date, end: date) -> dict[str, Any]:
    """Eligible catalog size, items shown in the range, and the covered share."""
    shown = _range(start, end).filter(impressions__gt=0).values("item").distinct().count()
    return _coverage(shown, Item.objects.eligible().count())


def gini(exposure: np.ndarray) -> float:
    """Gini coefficient of (n,) non-negative exposure counts: 0 equal, ->1 all on one item."""
    x = np.sort(np.asarray(exposure, dtype=np.float64))
    n, total = len(x), float(x.sum())
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * x).sum() / (n * total))


def lorenz_curve(exposure: np.ndarray, points: int = 20) -> list[tuple[float, float]]:
    """``points + 1`` (share of items, share of impressions) pairs, least shown items first."""
    x = np.sort(np.asarray(exposure, dtype=np.float64))
    n, total = len(x), float(x.sum())
    if n == 0 or total == 0:
        return [(k / points, k / points) for k in range(points + 1)]
    cum = np.concatenate([[0.0], np.cumsum(x)]) / total
    at = np.round(np.linspace(0, n, points + 1)).astype(int)
    return [(round(a / n, 6), round(float(cum[a]), 6)) for a in at]


def _inequality(shown: np.ndarray, n_catalog: int, points: int) -> dict[str, Any]:
    exposure = np.zeros(max(n_catalog, len(shown)), dtype=np.int64)
    exposure[: len(shown)] = shown
    return {"gini_of_exposure": round(gini(exposure), 6), "lorenz": lorenz_curve(exposure, points)}


def exposure_inequality(start: date, end: date, points: int = 20) -> dict[str, Any]:
    """Gini of impressions over the eligible catalog (unshown items count as 0) and its Lorenz curve."""
    shown = np.fromiter(item_exposure(start, end).values(), dtype=np.int64)
    return _inequality(shown, Item.objects.eligible().count(), points)


def never_shown_mask(totals: ItemTotals, catalog: Catalog) -> np.ndarray:
    """(m,) bool over ``catalog``: eligible items without an impression in ``totals``."""
    return catalog.eligible & ~np.isin(catalog.item, totals.item[totals.shown])


_NEVER_SHOWN_FIELDS = ("external_id", "title", "category", "created_at")


def items_never_shown(
    start: date, end: date, limit: int | None = 100, *, totals: ItemTotals | None = None,
    catalog: Catalog | None = None,
) -> dict[str, Any]:
    """Eligible items without a single impression in the range: how many, and the oldest ``limit`` of them.

    With ``totals`` and ``catalog`` (the page has them already) the items are picked from the
    arrays and only the listed ones are read; without them, one NOT EXISTS query does it all.
    """
    if totals is not None and catalog is not None:
        never = catalog.item[never_shown_mask(totals, catalog)]
        if limit is None:
            # All of them (the CSV): read the eligible items in order rather than bind every pk.
            wanted = set(never.tolist())
            rows = [
                dict(zip(_NEVER_SHOWN_FIELDS, r[1:])) for r in
                Item.objects.eligible().order_by("created_at", "pk").values_list("pk", *_NEVER_SHOWN_FIELDS)
                if r[0] in wanted
            ]
        else:
            pick = never[:limit].tolist()
            by_pk = {r[0]: dict(zip(_NEVER_SHOWN_FIELDS, r[1:]))
                     for r in Item.objects.filter(pk__in=pick).values_list("pk", *_NEVER_SHOWN_FIELDS)}
            rows = [by_pk[pk] for pk in pick if pk in by_pk]  # one deleted since the catalog was read: left out
        return {"count": len(never), "items": rows}
    shown = _range(start, end).filter(item=OuterRef("pk"), impressions__gt=0)
    never = Item.objects.eligible().filter(~Exists(shown))
    return {
        "count": never.count(),
        "items": list(
            never.order_by("created_at", "pk").values("external_id", "title", "category", "created_at")[:limit]
        ),
    }


def category_table(
    start: date, end: date, *, totals: ItemTotals | None = None, catalog: Catalog | None = None,
) -> list[dict[str, Any]]:
    """Per current category: catalog size, items shown, impressions, tail share, rates, revenue."""
    totals = totals if totals is not None else item_totals(start, end)
    catalog = catalog if catalog is not None else catalog_items()
    return fold_by_category(totals, catalog)


def fold_by_category(totals: ItemTotals, catalog: Catalog) -> list[dict[str, Any]]:
    """The category table from per-item sums: each item counts in its current category (no Django).

    Categories of items with count rows come first in the data; categories of the eligible
    catalog without any row get a row of zeros. Sorted by impressions, then name.
    """
    names: dict[str, int] = {}
    codes = np.array([names.setdefault(c, len(names)) for c in catalog.category], dtype=np.int64)
    # Each counted item's category code; an item missing from the catalog (none: rows cascade) is "".
    order = np.argsort(catalog.item, kind="stable")
    at = np.clip(np.searchsorted(catalog.item[order], totals.item), 0, max(len(order) - 1, 0))
    found = (catalog.item[order[at]] == totals.item) if len(order) else np.zeros(len(totals.item), dtype=bool)
    item_code = np.full(len(totals.item), -1, dtype=np.int64)
    item_code[found] = codes[order[at[found]]]
    if not found.all():
        item_code[~found] = names.setdefault("", len(names))
    k = len(names)

    def per_category(values: np.ndarray) -> np.ndarray:
        out = np.zeros(k, dtype=np.int64)
        np.add.at(out, item_code, values.astype(np.int64))
        return out

    present = per_category(np.ones(len(item_code), dtype=np.int64)) > 0
    shown = per_category(totals.shown)
    sums = {c: per_category(getattr(totals, c)) for c in _TOTAL_COLUMNS}
    cents = per_category(totals.revenue_cents)
    catalog_n = np.bincount(codes[catalog.eligible], minlength=k) if len(codes) else np.zeros(k, dtype=np.int64)

    out = []
    for name, c in names.items():
        if present[c]:
            counts = {f"sum_{m}": int(sums[m][c]) for m in ("impressions", "clicks", "add_to_carts", "purchases")}
            out.append({
                "category": name,
                "catalog_items": int(catalog_n[c]),
                "items_shown": int(shown[c]),
                "tail_share_of_impressions": _share(int(sums["tail_impressions"][c]), counts["sum_impressions"]),
                **_rates({**counts, "sum_revenue": Decimal(int(cents[c])).scaleb(-2)}),
            })
        elif catalog_n[c]:
            out.append({"category": name, "catalog_items": int(catalog_n[c]), "items_shown": 0,
                        "tail_share_of_impressions": None, **_rates({})})
    return sorted(out, key=lambda r: (-r["impressions"], r["category"]))


def rates_by_segment_and_variant(start: date, end: date) -> list[dict[str, Any]]:
    """CTR, add-to-cart and conversion rates of recommended items per (segment, variant; None: no experiment)."""
    rows = (
        _range(start, end, DailySegmentCount)
        .filter(attributed=True)
        .values("segment", "variant")
        .annotate(**_sums())
        .order_by("segment", "variant")
    )
    return [{"segment": r["segment"], "variant": r["variant"], **_rates(r)} for r in rows]


def fill_state(start: date, end: date) -> dict[str, Any]:
    """How much of the range the aggregation job has filled: counts per status and the oldest fill."""
    days = ReportDay.objects.filter(day__gte=start, day__lt=end)
    by_status = dict(days.values("status").annotate(n=Count("day")).values_list("status", "n"))
    return {
        "days": (end - start).days,
        **{s: by_status.get(s, 0) for s in ReportDay.Status.values},
        "oldest_fill": days.exclude(filled_at=None).order_by("filled_at").values_list("filled_at", flat=True).first(),
    }


def exposure_report(
    start: date, end: date, points: int = 20, *, totals: ItemTotals | None = None, n_catalog: int | None = None,
) -> dict[str, Any]:
    """The long-tail exposure report over [start, end) from the count tables (the raw-row report's shape).

    Totals come from the per-segment rollup; impressions per item from :func:`item_totals`
    (weekly rollup plus the days at the ends), unless the caller passes the ones it has.
    """
    cells = list(
        _range(start, end, DailySegmentCount).filter(attributed=True).values("segment", "variant").annotate(**_sums())
    )
    by_segment = {s: _rates(_add(c for c in cells if c["segment"] == s)) for s in (Segment.HEAD, Segment.TAIL)}
    by_variant: dict[str, dict[str, Any]] = {}
    for variant in sorted({c["variant"] for c in cells}, key=lambda v: v or ""):
        mine = [c for c in cells if c["variant"] == variant]
        tail = sum(c["sum_impressions"] or 0 for c in mine if c["segment"] == Segment.TAIL)
        rates = _rates(_add(mine))
        by_variant[variant or "(none)"] = {**rates, "tail_share_of_impressions": _share(tail, rates["impressions"])}
    total = by_segment["head"]["impressions"] + by_segment["tail"]["impressions"]
    purchases = by_segment["head"]["purchases"] + by_segment["tail"]["purchases"]
    totals = item_totals(start, end) if totals is None else totals
    shown = totals.impressions[totals.shown]
    n_catalog = Item.objects.eligible().count() if n_catalog is None else n_catalog
    lists = ReportDay.objects.filter(day__gte=start, day__lt=end).aggregate(
        n=Sum("lists_served"), fallback=Sum("fallback_lists")
    )
    return {
        "from": start,
        "to": end,
        "lists_served": lists["n"] or 0,
        "fallback_share": _share(lists["fallback"], lists["n"]),
        "impressions": total,
        "tail_share_of_impressions": _share(by_segment["tail"]["impressions"], total),
        "tail_share_of_conversions": _share(by_segment["tail"]["purchases"], purchases),
        **_coverage(len(shown), n_catalog),
        **_inequality(shown, n_catalog, points),
        "by_segment": by_segment,
        "by_variant": by_variant,
        "fill_state": fill_state(start, end),
    }


def _add(rows) -> dict[str, Any]:
    """Sum ``_sums`` rows into one."""
    out: dict[str, Any] = {}
    for r in rows:
        for k in SUMS:
            out[f"sum_{k}"] = out.get(f"sum_{k}", 0) + (r[f"sum_{k}"] or 0)
    return out


def daily_coverage(start: date, end: date, n_catalog: int | None = None) -> list[dict[str, Any]]:
    """Per day with an item shown: items shown that day and their share of today's eligible catalog.

    Read from ``ReportDay.items_shown`` (written with the day's counts). Days filled before
    that column existed (NULL until the job backfills them) are counted from their item rows.
    """
    if end < start:
        raise ValueError(f"The report range ends ({end}) before it starts ({start}); swap them.")
    n_catalog = Item.objects.eligible().count() if n_catalog is None else n_catalog
    stored = list(ReportDay.objects.filter(day__gte=start, day__lt=end).values_list("day", "items_shown"))
    shown = {day: n for day, n in stored if n is not None}
    unknown = [day for day, n in stored if n is None]
    if unknown:
        shown.update(
            DailyItemCount.objects.filter(day__in=unknown, impressions__gt=0).values("day")
            .annotate(n=Count("item", distinct=True)).order_by().values_list("day", "n")
        )
    return [{"day": day, "items_shown": n, "catalog_coverage": _share(min(n, n_catalog), n_catalog)}
            for day, n in sorted(shown.items()) if n]


PROMOTION_MEASURES = ("impressions", "clicks", "purchases", "revenue")


def _day_after(moment) -> date:
    """The first UTC day a window ending (exclusively) at ``moment`` does not touch."""
    return (moment.astimezone(dt_timezone.utc) - timedelta(microseconds=1)).date() + timedelta(days=1)


def promotion_windows(promotion, start: date, end: date) -> tuple[tuple[date, date], tuple[date, date] | None] | None:
    """(during, before) day ranges of a promotion inside the report range [start, end), or None if it misses it.

    ``during`` is every UTC day the promotion's window touches, clipped to the report range;
    ``before`` is the same number of days just before the promotion started (None when it
    has no start: there is no unpromoted period to compare with).
    """
    first = promotion.starts_at.astimezone(dt_timezone.utc).date() if promotion.starts_at else None
    after = _day_after(promotion.ends_at) if promotion.ends_at else None
    lo, hi = max(start, first or start), min(end, after or end)
    if hi <= lo:
        return None
    before = (first - timedelta(days=(hi - lo).days), first) if first else None
    return (lo, hi), before


def promotion_effects(start: date, end: date, limit: int = 50) -> list[dict[str, Any]]:
    """Per promotion whose window meets [start, end): its target items' counts per day, during vs before.

    Counts are every impression, click, purchase and revenue of the target items (attributed
    to recommendations or not) from the daily item counts; a category promotion targets the
    items currently in that category. ``lift_*`` is during / before - 1 per day (None without
    a before period or with nothing before). At most three queries, however many promotions.
    """
    lo = datetime.combine(start, time.min, tzinfo=dt_timezone.utc)
    hi = datetime.combine(end, time.min, tzinfo=dt_timezone.utc)
    promotions = list(
        Promotion.objects.select_related("policy", "item")
        .filter(Q(starts_at__isnull=True) | Q(starts_at__lt=hi), Q(ends_at__isnull=True) | Q(ends_at__gt=lo))
        .order_by("-starts_at", "pk")[:limit]
    )
    windows = {p.pk: promotion_windows(p, start, end) for p in promotions}
    promotions = [p for p in promotions if windows[p.pk] is not None]
    if not promotions:
        return []

    # Daily sums per promoted category and per promoted item (a few rows a day), windows summed here:
    # one aggregate over the target rows instead of a filtered sum per promotion over every row.
    first_day = min((before or during)[0] for during, before in (windows[p.pk] for p in promotions))
    days = _range(first_day, end)
    sums = {f"n_{k}": Sum(k) for k in PROMOTION_MEASURES}
    daily: dict[tuple[str, Any], dict[date, dict[str, Any]]] = {}
    categories = sorted({p.category for p in promotions if not p.item_id})
    items = sorted({p.item_id for p in promotions if p.item_id})
    if categories:
        for r in days.filter(item__category__in=categories).values("day", category=F("item__category")).annotate(**sums):
            daily.setdefault(("category", r["category"]), {})[r["day"]] = r
    if items:
        for r in days.filter(item_id__in=items).values("day", "item").annotate(**sums):
            daily.setdefault(("item", r["item"]), {})[r["day"]] = r

    def total(p, key: str, span: tuple[date, date] | None) -> float | None:
        if span is None:
            return None
        rows = daily.get(("item", p.item_id) if p.item_id else ("category", p.category), {})
        return float(sum(r[f"n_{key}"] or 0 for d, r in rows.items() if span[0] <= d < span[1]))

    out = []
    for p in promotions:
        during, before = windows[p.pk]
        n_days = (during[1] - during[0]).days
        row: dict[str, Any] = {
            "promotion": p.pk,
            "policy": p.policy.name,
            "target": f"item {p.item.external_id}" if p.item_id else f"category {p.category}",
            "boost": p.boost,
            "starts_at": p.starts_at,
            "ends_at": p.ends_at,
            "days": n_days,
            "during_from": during[0],
            "before_from": before[0] if before else None,
        }
        for k in PROMOTION_MEASURES:
            now_v = total(p, k, during) / n_days
            was = total(p, k, before)
            was = None if was is None else was / n_days
            row[f"{k}_per_day_before"] = None if was is None else round(was, 6)
            row[f"{k}_per_day_during"] = round(now_v, 6)
            row[f"lift_{k}"] = round(now_v / was - 1, 6) if was else None
        out.append(row)
    return out


def missing_days(start: date, end: date, today: date) -> dict[str, Any]:
    """Days of [start, end) the aggregation job has no row for, split into what is and is not a gap.

    ``before_data``: days before the first day the job ever filled (there were no events yet);
    ``future``: days after ``today``; ``missing``: the other days without a row, i.e. not
    aggregated yet (the job is behind, or has never run: then every day up to today).
    """
    known = set(ReportDay.objects.filter(day__gte=start, day__lt=end).values_list("day", flat=True))
    first = ReportDay.objects.order_by("day").values_list("day", flat=True).first() or date.min
    days = [start + timedelta(days=n) for n in range((end - start).days)]
    absent = [d for d in days if d not in known]
    return {
        "before_data": sum(1 for d in absent if d < first),
        "future": sum(1 for d in absent if d > today and d >= first),
        "missing": [d for d in absent if first <= d <= today],
    }


def tail_totals(start: date, end: date) -> dict[str, Any]:
    """Range totals in the shape of :func:`daily_tail_shares`, from the per-segment rollup.

    ``impressions`` and its tail share count every impression event (shown by recommendation
    lists or logged by the shop otherwise); ``recommended_impressions`` only those of served
    lists. Conversions are purchases attributed to a list; ``all_purchases`` every purchase.
    """
    row = _range(start, end, DailySegmentCount).aggregate(
        n_impressions=Sum("impressions"),
        tail_impressions=Sum("impressions", filter=TAIL),
        recommended_impressions=Sum("impressions", filter=Q(attributed=True)),
        conversions=Sum("purchases", filter=Q(attributed=True)),
        tail_conversions=Sum("purchases", filter=Q(attributed=True) & TAIL),
        all_purchases=Sum("purchases"),
        tail_all_purchases=Sum("purchases", filter=TAIL),
    )
    return {
        "impressions": row["n_impressions"] or 0,
        "recommended_impressions": row["recommended_impressions"] or 0,
        "tail_share_of_impressions": _share(row["tail_impressions"], row["n_impressions"]),
        "conversions": row["conversions"] or 0,
        "tail_share_of_conversions": _share(row["tail_conversions"], row["conversions"]),
        "all_purchases": row["all_purchases"] or 0,
        "tail_share_of_all_purchases": _share(row["tail_all_purchases"], row["all_purchases"]),
    }
