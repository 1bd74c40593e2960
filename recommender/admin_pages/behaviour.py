"""The "Behaviour analysis" admin page: what shoppers do, as summarised by the active model's training run.

The figures are the ``behaviour`` summary that training stores with each model version
(:func:`recommender.ml.analysis.behaviour_summary`) and the version's K-means interest
segments, so the page reads a few rows and never scans events.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from django.http import HttpRequest, HttpResponse

from ..models import EventType, InterestSegment, Item, ModelVersion
from .base import Table, percent, render_page, staff_page
from .charts import PALETTE, Chart, Series, bar_chart, fmt_number, line_chart
from .exposure import Card

TITLE = "Behaviour analysis"
NO_MODEL = ("There is no trained model yet, so there is no behaviour summary to show. "
            "Train one: run `python manage.py train` (or the *Retrain now* action under Training runs); "
            "the summary of the events it learned from appears here once it is active.")
NO_SUMMARY = ("The active model version {name} was trained before behaviour summaries were stored. "
              "Train a new version (`python manage.py train`) to see them here.")


def active_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def _item_titles(version: ModelVersion, indices: list[int]) -> dict[int, tuple[str, str]]:
    """Item index (in the version's training snapshot) -> (shop item id, title), via the artifact's item_pks.npy."""
    path = Path(version.artifact_path or "") / "item_pks.npy"
    if not indices or not path.is_file():
        return {}
    pks = np.load(path, allow_pickle=False)
    wanted = {i: int(pks[i]) for i in indices if 0 <= i < len(pks)}
    found = {pk: (ext, title) for pk, ext, title in
             Item.objects.filter(pk__in=wanted.values()).values_list("pk", "external_id", "title")}
    return {i: found[pk] for i, pk in wanted.items() if pk in found}


def behaviour_data(version: ModelVersion) -> dict[str, Any]:
    """Cards, charts and tables of the page for a model version with a behaviour summary."""
    b = version.metrics["behaviour"]
    # JSON columns do not keep key order (PostgreSQL's jsonb sorts keys): show the types in their own order.
    order = {label: code for code, label in EventType.choices}
    types = sorted(b["event_types"].items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))
    type_chart = bar_chart(
        "event-types", "Events by type", [k for k, _ in types], [v for _, v in types], value_label="events",
        note="Every event in the training window, impressions included.",
    )

    stages = b["funnel"]["stages"]
    funnel_chart = bar_chart(
        "funnel", "Purchase funnel: shoppers reaching each stage", [s["stage"] for s in stages],
        [s["users"] for s in stages], value_label="shoppers",
        colors=[PALETTE[k % len(PALETTE)] for k in range(len(stages))],
        note="A shopper reaches a stage with an event of that stage or a later one (a purchase implies the view).",
    )
    funnel_table = Table(
        "funnel-detail",
        [("stage", "stage"), ("users", "shoppers"), ("user_conversion", "from previous"),
         ("users_with_event", "shoppers with this event"), ("pairs", "shopper-item pairs"),
         ("pair_conversion", "pairs from previous")],
        stages, title="Funnel in numbers",
        caption=f"Overall, {percent(b['funnel']['user_conversion_overall'])} of shoppers who reached the first "
                f"stage bought something.",
        formats={"user_conversion": "percent", "pair_conversion": "percent"},
    )

    daily = b["daily_active_users"]
    weekly = b["weekly_active_users"]
    dau_chart = line_chart(
        "active-daily", "Active shoppers per day", daily["start"], [Series("active shoppers", daily["active_users"])],
        x_label="day (UTC)", y_label="shoppers", note="Shoppers with any event other than an impression that day.",
    )
    wau_chart = line_chart(
        "active-weekly", "Active shoppers per week", weekly["start"],
        [Series("active shoppers", weekly["active_users"], PALETTE[2])],
        x_label="week starting (Monday)", y_label="shoppers",
    )

    pop = b["popularity"]
    curve, cut = pop["curve"], pop["cut"]
    ranks = curve["rank"]
    shares = curve["interaction_share"]
    # Two series that meet at the cut: the head's part of the curve and the tail's.
    last_head = max((k for k, r in enumerate(ranks) if r <= cut), default=-1)
    head_vals = [s if k <= last_head else None for k, s in enumerate(shares)]
    tail_vals = [s if k >= max(last_head, 0) else None for k, s in enumerate(shares)]
    head_share = pop["head_share"]
    popularity_chart = line_chart(
        "popularity", "Popularity curve", [str(r) for r in ranks],
        [Series(f"head: top {cut:,} items", head_vals, PALETTE[1]), Series("tail", tail_vals, PALETTE[0])],
        value_format="percent", y_max=1.0, x_label="items ranked by interactions (most first)",
        y_label="cumulative share of interactions",
        note=(f"Over the last {pop['window_days']:g} days of the window: the head is the top {cut:,} of "
              f"{pop['n_items']:,} items ({percent(cut / pop['n_items'] if pop['n_items'] else None)}), and it took "
              f"{percent(head_share)} of the {pop['n_interactions']:,} interactions. "
              f"{pop['items_with_interactions']:,} items had any interaction."),
    )
    names = _item_titles(version, [t["item"] for t in pop["top_items"]])
    top_table = Table(
        "top-items",
        [("rank", "rank"), ("item_id", "item id"), ("title", "title"), ("count", "interactions"), ("segment", "segment")],
        [
            {"rank": n + 1, "item_id": names.get(t["item"], ("#" + str(t["item"]), ""))[0],
             "title": names.get(t["item"], ("", "(no longer in the catalog)"))[1], "count": t["count"],
             "segment": "head" if n < cut else "tail"}
            for n, t in enumerate(pop["top_items"])
        ],
        title="Most interacted-with items",
    )

    rep = b["repeat_purchases"]
    repeat_table = Table(
        "repeat-purchases", [("measure", "measure"), ("count", "count"), ("rate", "rate")],
        [
            {"measure": "shoppers who bought", "count": rep["purchasing_users"], "rate": None},
            {"measure": "shoppers who bought again on a later day", "count": rep["repeat_users"],
             "rate": rep["repeat_user_rate"]},
            {"measure": "shopper-item pairs bought", "count": rep["purchased_pairs"], "rate": None},
            {"measure": "pairs bought again on a later day", "count": rep["repeat_pairs"], "rate": rep["repeat_pair_rate"]},
        ],
        title="Repeat purchases", caption="Several purchases on one day (one basket) are not a repeat.",
        formats={"rate": "percent"},
    )

    segs = list(InterestSegment.objects.filter(model_version=version).order_by("index"))
    clustered = sum(s.size for s in segs)
    segment_table = Table(
        "segments",
        [("index", "#"), ("label", "label"), ("size", "shoppers"), ("share", "share"), ("top_items", "top items"),
         ("top_categories", "top categories"), ("top_terms", "title terms")],
        [
            {"index": s.index, "label": s.label or f"segment {s.index}", "size": s.size,
             "share": s.size / clustered if clustered else None,
             "top_items": "; ".join(str(t.get("title") or t.get("item_id")) for t in s.top_items[:5]),
             "top_categories": ", ".join(str(c.get("category")) for c in s.top_categories[:3]),
             "top_terms": ", ".join(str(t.get("term")) for t in s.top_terms[:8])}
            for s in segs
        ],
        title="Segments in detail",
        caption="K-means clusters of shoppers' interests; items, categories and terms are those most over-represented "
                "in the segment compared with all shoppers.",
        formats={"share": "percent"},
    )
    segment_chart = bar_chart(
        "segment-sizes", "Shoppers per interest segment",
        [f"{s.index}: {s.label or 'segment'}" for s in segs], [s.size for s in segs], value_label="shoppers",
        colors=[PALETTE[k % len(PALETTE)] for k in range(len(segs))],
    ) if segs else None

    cards = [
        Card("events", "events", fmt_number(b["n_events"]), b["n_events"]),
        Card("users", "shoppers", fmt_number(b["n_users"]), b["n_users"]),
        Card("items", "items", fmt_number(b["n_items"]), b["n_items"]),
        Card("purchase_conversion", "shoppers who bought", percent(b["funnel"]["user_conversion_overall"]),
             b["funnel"]["user_conversion_overall"], "of those who reached the first funnel stage"),
        Card("repeat_user_rate", "repeat-purchase rate", percent(rep["repeat_user_rate"]), rep["repeat_user_rate"],
             f"{rep['repeat_users']:,} of {rep['purchasing_users']:,} buyers bought again"),
        Card("head_cut", "head items", fmt_number(cut), cut, f"take {percent(head_share)} of interactions"),
        Card("segments", "interest segments", fmt_number(len(segs)), len(segs)),
    ]
    charts: list[Chart] = [type_chart, funnel_chart, dau_chart, wau_chart, popularity_chart]
    if segment_chart:
        charts.append(segment_chart)
    return {
        "cards": cards,
        "type_chart": type_chart, "funnel_chart": funnel_chart, "funnel_table": funnel_table,
        "dau_chart": dau_chart, "wau_chart": wau_chart,
        "popularity_chart": popularity_chart, "top_table": top_table,
        "repeat_table": repeat_table, "segment_chart": segment_chart, "segment_table": segment_table,
        "tables": [c.table for c in charts] + [funnel_table, top_table, repeat_table, segment_table],
    }


@staff_page
def behaviour_page(request: HttpRequest) -> HttpResponse:
    """Behaviour summary and interest segments of the active model version."""
    version = active_version()
    if version is None:
        return render_page(request, "recommender/admin/behaviour.html", TITLE, missing=NO_MODEL)
    if not (version.metrics or {}).get("behaviour"):
        return render_page(request, "recommender/admin/behaviour.html", TITLE, version=version,
                           missing=NO_SUMMARY.format(name=version.name))
    data = behaviour_data(version)
    return render_page(request, "recommender/admin/behaviour.html", TITLE, data.pop("tables"), version=version, **data)
