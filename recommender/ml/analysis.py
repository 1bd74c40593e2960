"""Behaviour analysis for the admin: counts, funnel, active users, popularity, repeat purchases.

Pure functions of :class:`~recommender.ml.base.Interactions` that return plain dicts of
Python ints, floats, strings and lists (``None`` where a rate has no denominator), ready
for ``json.dumps`` and for the admin templates. Days and weeks are UTC; weeks start on
Monday (ISO). Pure numpy; never imports Django.

The head/tail cut is the one the exposure policy uses
(:func:`recommender.ranking.segments.head_mask`), so the admin shows the same head that
ranking treats as head.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import numpy as np

from ..ranking.segments import head_mask, recent_interaction_counts
from .base import EVENT_CODES, Interactions
from .processing import to_unix

DAY = 86_400
#: The purchase funnel, in order.
FUNNEL_STAGES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")
_IMPRESSION = EVENT_CODES["impression"]
_PURCHASE = EVENT_CODES["purchase"]
# 1970-01-01 was a Thursday: shifting days by 3 makes weeks start on Monday.
_MONDAY_SHIFT = 3


def _rate(num: int, den: int) -> float | None:
    return float(num) / float(den) if den else None


def _not_impressions(data: Interactions) -> np.ndarray:
    return np.asarray(data.event_type) != _IMPRESSION


def event_type_counts(data: Interactions) -> dict[str, int]:
    """Events per event type name, every type listed (0 when absent), in code order."""
    counts = np.bincount(np.asarray(data.event_type, dtype=np.int64), minlength=max(EVENT_CODES.values()) + 1)
    return {name: int(counts[code]) for name, code in sorted(EVENT_CODES.items(), key=lambda kv: kv[1])}


def funnel(data: Interactions, stages: Sequence[str] = FUNNEL_STAGES) -> dict[str, Any]:
    """The view -> click -> add_to_cart -> purchase funnel, for users and for (user, item) pairs.

    A user (or pair) *reaches* a stage when it has an event of that stage or of any later
    stage: a purchase implies the shopper got past the earlier stages even when the shop
    did not log them (a purchase from a link in an e-mail has no view). So the counts never
    grow along the funnel and every conversion rate is in [0, 1]. The counts of users and
    pairs with an event of exactly that type are given too, as ``*_with_event``.

    Parameters
    ----------
    data : events (other event types are ignored)
    stages : event type names in funnel order

    Returns
    -------
    dict with
        ``stages``: list of ``{"stage", "users", "pairs", "users_with_event", "pairs_with_event",
        "user_conversion", "pair_conversion"}`` where the conversions are from the previous
        stage (None for the first stage or an empty previous stage);
        ``user_conversion_overall`` / ``pair_conversion_overall``: last stage over first.
    """
    unknown = [s for s in stages if s not in EVENT_CODES]
    if unknown:
        raise ValueError(f"Unknown funnel stage(s) {unknown}; event types are {sorted(EVENT_CODES)}.")
    codes = np.array([EVENT_CODES[s] for s in stages], dtype=np.int64)
    # level[code] = position of the event type in the funnel, -1 when not a stage.
    level = np.full(max(EVENT_CODES.values()) + 1, -1, dtype=np.int64)
    level[codes] = np.arange(len(codes))
    lv = level[np.asarray(data.event_type, dtype=np.int64)]
    m = lv >= 0
    user = np.asarray(data.user, dtype=np.int64)[m]
    pair = user * data.n_items + np.asarray(data.item, dtype=np.int64)[m]
    lv = lv[m]

    def reach(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n_stages,) keys reaching each stage, and keys with an event of that stage."""
        if len(keys) == 0:
            zero = np.zeros(len(codes), dtype=np.int64)
            return zero, zero
        uniq, inv = np.unique(keys, return_inverse=True)
        deepest = np.full(len(uniq), -1, dtype=np.int64)
        np.maximum.at(deepest, inv, lv)
        at_least = np.bincount(deepest, minlength=len(codes))[::-1].cumsum()[::-1]
        with_event = np.bincount(np.unique(inv * len(codes) + lv) % len(codes), minlength=len(codes))
        return at_least, with_event

    users_reach, users_with = reach(user)
    pairs_reach, pairs_with = reach(pair)
    rows = []
    for k, name in enumerate(stages):
        rows.append(
            {
                "stage": name,
                "users": int(users_reach[k]),
                "pairs": int(pairs_reach[k]),
                "users_with_event": int(users_with[k]),
                "pairs_with_event": int(pairs_with[k]),
                "user_conversion": _rate(users_reach[k], users_reach[k - 1]) if k else None,
                "pair_conversion": _rate(pairs_reach[k], pairs_reach[k - 1]) if k else None,
            }
        )
    return {
        "stages": rows,
        "user_conversion_overall": _rate(users_reach[-1], users_reach[0]) if len(codes) else None,
        "pair_conversion_overall": _rate(pairs_reach[-1], pairs_reach[0]) if len(codes) else None,
    }


def active_users(
    data: Interactions,
    period: str = "day",
    *,
    include_impressions: bool = False,
) -> dict[str, Any]:
    """Distinct active users per UTC day or ISO week (Monday start), without gaps.

    Parameters
    ----------
    data : events
    period : ``"day"`` or ``"week"``
    include_impressions : count a user as active on an impression alone (default no: an
        impression can be logged without the shopper doing anything, e.g. in an e-mail)

    Returns
    -------
    ``{"period": period, "start": [ISO date of each period's first day], "active_users": [int]}``,
    one entry per period from the first to the last active one (0 for periods without events)
    """
    if period not in ("day", "week"):
        raise ValueError(f"period must be 'day' or 'week', got {period!r}.")
    m = np.ones(len(data.user), dtype=bool) if include_impressions else _not_impressions(data)
    day = np.floor_divide(np.asarray(data.timestamp)[m], DAY).astype(np.int64)
    if period == "week":
        bucket = (day + _MONDAY_SHIFT) // 7
    else:
        bucket = day
    if len(bucket) == 0:
        return {"period": period, "start": [], "active_users": []}
    lo, hi = int(bucket.min()), int(bucket.max())
    n_buckets = hi - lo + 1
    keys = np.unique((bucket - lo) * data.n_users + np.asarray(data.user, dtype=np.int64)[m])
    counts = np.bincount(keys // data.n_users, minlength=n_buckets)
    first_day = np.arange(lo, hi + 1) * 7 - _MONDAY_SHIFT if period == "week" else np.arange(lo, hi + 1)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return {
        "period": period,
        "start": [(epoch + timedelta(days=int(d))).date().isoformat() for d in first_day],
        "active_users": [int(c) for c in counts],
    }


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts: 0 when all equal, ``1 - 1/n`` when one has all.

    ``G = sum_i (2i - n - 1) x_(i) / (n * sum x)`` over ``x`` sorted ascending, ``i = 1..n``
    (the formula of :func:`recommender.ml.metrics.gini_at_k`). NaN when the sum is 0.

    Parameters
    ----------
    counts : (n,) int or float
    """
    x = np.sort(np.asarray(counts, dtype=np.float64).ravel())
    n = len(x)
    total = x.sum()
    if n == 0 or total <= 0:
        return float("nan")
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(np.sum((2 * i - n - 1) * x) / (n * total))


def popularity_curve(
    data: Interactions,
    *,
    now: datetime | float,
    window_days: float = 30.0,
    head_fraction: float = 0.2,
    max_points: int | None = 200,
) -> dict[str, Any]:
    """Items sorted by interactions over the last ``window_days``, cumulative share, head cut.

    Interactions are events other than impressions in ``[now - window_days, now]``; every
    item of the index space counts, those without interactions too (they are the far tail).
    The head is :func:`recommender.ranking.segments.head_mask` of these counts: at most
    ``floor(head_fraction * n_items)`` items, ties at the cut and zero counts in the tail.
    Head items come first in the sorted order, so the head is ``order[:cut]``.

    Parameters
    ----------
    data : events
    now : end of the window (aware datetime or unix seconds)
    window_days : length of the window in days
    head_fraction : share of the catalog that may be head, in [0, 1]
    max_points : the curve is sampled at about this many evenly spaced ranks (the first and
        the last included); None returns every item

    Returns
    -------
    dict with
        ``n_items``, ``n_interactions``, ``window_days``, ``head_fraction``;
        ``cut``: number of head items (index into the sorted order where the tail starts);
        ``head_share``: share of interactions that went to head items (None without any);
        ``gini``: Gini coefficient of the per-item counts (None without interactions);
        ``items_with_interactions``;
        ``curve``: ``{"rank": [int], "item_share": [float], "interaction_share": [float]}`` where
        ``item_share = rank / n_items`` and ``interaction_share`` is the cumulative share of
        interactions of the ``rank`` most popular items (a Lorenz curve read from the top);
        ``top_items``: the 20 most interacted item indices, with counts.
    """
    end = to_unix(now)
    m = _not_impressions(data)
    counts = recent_interaction_counts(
        np.asarray(data.item)[m],
        np.asarray(data.timestamp)[m],
        data.n_items,
        datetime.fromtimestamp(end, timezone.utc),
        window_days,
    ).astype(np.int64)
    is_head = head_mask(counts, head_fraction)
    # Descending counts: the head (counts above the cut, see head_mask) is a prefix of it.
    order = np.argsort(-counts, kind="stable")
    total = int(counts.sum())
    cum = np.cumsum(counts[order])
    n = data.n_items
    if max_points is None or n <= max_points:
        ranks = np.arange(1, n + 1)
    else:
        ranks = np.unique(np.linspace(1, n, num=max_points).round().astype(np.int64))
    share = (cum[ranks - 1] / total) if total else np.zeros(len(ranks))
    g = gini(counts)
    return {
        "n_items": int(n),
        "n_interactions": total,
        "window_days": float(window_days),
        "head_fraction": float(head_fraction),
        "cut": int(is_head.sum()),
        "head_share": _rate(int(counts[is_head].sum()), total),
        "gini": None if np.isnan(g) else g,
        "items_with_interactions": int((counts > 0).sum()),
        "curve": {
            "rank": [int(r) for r in ranks],
            "item_share": [float(r) / n for r in ranks],
            "interaction_share": [float(s) for s in share],
        },
        "top_items": [{"item": int(i), "count": int(counts[i])} for i in order[:20] if counts[i] > 0],
    }


def repeat_purchases(data: Interactions) -> dict[str, Any]:
    """How often shoppers buy again on a later (UTC) day.

    Returns
    -------
    dict with
        ``purchasing_users``: users with a purchase;
        ``repeat_users``: of those, users with purchases on two or more distinct days;
        ``repeat_user_rate``: ``repeat_users / purchasing_users`` (None without purchases);
        ``purchased_pairs``: distinct (user, item) pairs purchased;
        ``repeat_pairs``: pairs purchased on two or more distinct days;
        ``repeat_pair_rate``: ``repeat_pairs / purchased_pairs`` (None without purchases).
        Several purchases on the same day (one basket, or a retry) are not a repeat.
    """
    m = np.asarray(data.event_type) == _PURCHASE
    user = np.asarray(data.user, dtype=np.int64)[m]
    item = np.asarray(data.item, dtype=np.int64)[m]
    day = np.floor_divide(np.asarray(data.timestamp)[m], DAY).astype(np.int64)

    def repeats(key: np.ndarray) -> tuple[int, int]:
        """(distinct keys, keys seen on >= 2 distinct days)."""
        if len(key) == 0:
            return 0, 0
        d = day - day.min()
        span = int(d.max()) + 1
        if int(key.max()) < (2**62) // span:
            # One packed int64 per (key, day): np.unique on it beats a row-wise unique.
            key_day = np.unique(key * span + d) // span
        else:
            key_day = np.unique(np.stack([key, d], axis=1), axis=0)[:, 0]
        _, n_days = np.unique(key_day, return_counts=True)
        return len(n_days), int((n_days >= 2).sum())

    n_users, rep_users = repeats(user)
    n_pairs, rep_pairs = repeats(user * data.n_items + item)
    return {
        "purchasing_users": n_users,
        "repeat_users": rep_users,
        "repeat_user_rate": _rate(rep_users, n_users),
        "purchased_pairs": n_pairs,
        "repeat_pairs": rep_pairs,
        "repeat_pair_rate": _rate(rep_pairs, n_pairs),
    }


def behaviour_summary(
    data: Interactions,
    *,
    now: datetime | float,
    window_days: float = 30.0,
    head_fraction: float = 0.2,
) -> dict[str, Any]:
    """Everything above in one JSON-ready dict, for the admin's behaviour page."""
    return {
        "n_events": int(len(data.user)),
        "n_users": int(data.n_users),
        "n_items": int(data.n_items),
        "event_types": event_type_counts(data),
        "funnel": funnel(data),
        "daily_active_users": active_users(data, "day"),
        "weekly_active_users": active_users(data, "week"),
        "popularity": popularity_curve(data, now=now, window_days=window_days, head_fraction=head_fraction),
        "repeat_purchases": repeat_purchases(data),
    }
