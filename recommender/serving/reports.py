"""The long-tail exposure report recomputed from raw rows (served lists and attributed events).

Not served: the API reads the count tables (:func:`recommender.reports.queries.exposure_report`).
This is the independent reference those tables are checked against (tests/integration/
test_aggregation.py) and the baseline of bench/reports.py; it reads every raw row of the
period, which is fine for days of traffic, not for years.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

import numpy as np

from ..models import Event, EventType, Item, ServedList
from ..reports.queries import gini

__all__ = ["exposure_report", "gini"]

CLICK, PURCHASE = int(EventType.CLICK), int(EventType.PURCHASE)


def _rates(impressions: int, clicks: int, purchases: int) -> dict[str, Any]:
    return {
        "impressions": impressions,
        "clicks": clicks,
        "purchases": purchases,
        "ctr": round(clicks / impressions, 6) if impressions else None,
        "conversion_rate": round(purchases / impressions, 6) if impressions else None,
    }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def exposure_report(start: datetime, end: datetime) -> dict[str, Any]:
    """Tail shares, coverage, Gini, and CTR / conversion by segment and by A/B variant over [start, end)."""
    lists = list(
        ServedList.objects.filter(served_at__gte=start, served_at__lt=end).values_list(
            "request_id", "variant", "items", "segments", "fallback"
        )
    )
    served: dict[Any, tuple[str, dict[int, str]]] = {}
    shown: Counter[int] = Counter()
    imp = Counter()  # (variant, segment) -> impressions
    fallbacks = 0
    for request_id, variant, items, segments, fallback in lists:
        seg_of = {}
        for pk, seg in zip(items, segments):
            seg_of.setdefault(pk, "tail" if seg == "t" else "head")
            imp[(variant, seg_of[pk])] += 1
            shown[pk] += 1
        served[request_id] = (variant, seg_of)
        fallbacks += bool(fallback)

    # Clicks and purchases that carry a request_id of the period's lists, once per listed item.
    events = Event.objects.filter(
        request_id__isnull=False, event_type__in=(CLICK, PURCHASE), timestamp__gte=start, timestamp__lt=end,
    ).values_list("request_id", "item_id", "event_type")
    hits: set[tuple[Any, int, int]] = set()
    for request_id, item_id, event_type in events.iterator(chunk_size=10_000):
        entry = served.get(request_id)
        if entry is not None and item_id in entry[1]:
            hits.add((request_id, item_id, event_type))
    conv = Counter()  # (variant, segment, type) -> count
    for request_id, item_id, event_type in hits:
        variant, seg_of = served[request_id]
        conv[(variant, seg_of[item_id], event_type)] += 1

    n_catalog = Item.objects.eligible().count()
    by_segment = {}
    for seg in ("head", "tail"):
        i = sum(v for (_, s), v in imp.items() if s == seg)
        c = sum(v for (_, s, t), v in conv.items() if s == seg and t == CLICK)
        p = sum(v for (_, s, t), v in conv.items() if s == seg and t == PURCHASE)
        by_segment[seg] = _rates(i, c, p)
    by_variant = defaultdict(dict)
    for variant in sorted({v for v, _ in imp}):
        i = sum(n for (v, _), n in imp.items() if v == variant)
        c = sum(n for (v, _, t), n in conv.items() if v == variant and t == CLICK)
        p = sum(n for (v, _, t), n in conv.items() if v == variant and t == PURCHASE)
        tail_i = imp[(variant, "tail")]
        by_variant[variant or "(none)"] = {**_rates(i, c, p), "tail_share_of_impressions": _share(tail_i, i)}
    total_imp = sum(imp.values())
    total_purchases = by_segment["head"]["purchases"] + by_segment["tail"]["purchases"]
    exposure = np.zeros(max(n_catalog, len(shown)), dtype=np.int64)
    exposure[: len(shown)] = list(shown.values())
    return {
        "from": start,
        "to": end,
        "lists_served": len(lists),
        "fallback_share": _share(fallbacks, len(lists)),
        "impressions": total_imp,
        "tail_share_of_impressions": _share(by_segment["tail"]["impressions"], total_imp),
        "tail_share_of_conversions": _share(by_segment["tail"]["purchases"], total_purchases),
        "catalog_items": n_catalog,
        "items_shown": len(shown),
        "catalog_coverage": _share(min(len(shown), n_catalog), n_catalog),
        "gini_of_exposure": round(gini(exposure), 6),
        "by_segment": by_segment,
        "by_variant": dict(by_variant),
    }
