"""Head and tail segments of the catalog, from interaction counts. Pure numpy; no Django.

The head is the top ``head_fraction`` of items by interactions over the last N days;
everything else, new items included, is the tail. The exposure policy
(:mod:`recommender.ranking.policy`) reads the result as ``CatalogArrays.is_head``.
"""
from __future__ import annotations

from datetime import datetime

import numpy as np

# float(head_fraction * n) can land a hair under an integer (0.29 * 100 = 28.999...);
# the same tolerance is used for the tail quota so that "x% of n" means what people expect.
EPS = 1e-9


def recent_interaction_counts(
    item: np.ndarray,
    timestamp: np.ndarray,
    n_items: int,
    now: datetime,
    window_days: float,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """Interactions per item in the window ``[now - window_days, now]``.

    Parameters
    ----------
    item : (n_events,) int, item index in ``[0, n_items)``
    timestamp : (n_events,) int or float, unix seconds
    n_items : size of the item index space; items without events count 0
    now : timezone-aware end of the window (events after it are ignored too)
    window_days : length of the window in days, > 0
    weight : (n_events,) float or None; None counts every event as 1

    Returns
    -------
    counts : (n_items,) float64
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC); got a naive datetime.")
    if window_days <= 0:
        raise ValueError(f"window_days must be > 0, got {window_days}.")
    item = np.asarray(item)
    timestamp = np.asarray(timestamp)
    if item.shape != timestamp.shape:
        raise ValueError(f"item has shape {item.shape} but timestamp has {timestamp.shape}.")
    end = now.timestamp()
    start = end - window_days * 86_400.0
    keep = (timestamp >= start) & (timestamp <= end)
    w = None if weight is None else np.asarray(weight, dtype=np.float64)[keep]
    return np.bincount(item[keep], weights=w, minlength=n_items).astype(np.float64)[:n_items]


def head_mask(counts: np.ndarray, head_fraction: float) -> np.ndarray:
    """Which items are head: the top ``head_fraction`` of items by interaction count.

    The head has at most ``floor(head_fraction * n_items)`` items. Items tied with the
    first item that does not fit are all tail, so equal counts always get the same
    segment (the result does not depend on item order), and items with no interactions
    are always tail, so a new item is never head.

    Parameters
    ----------
    counts : (n_items,) int or float, interactions per item over the window
    head_fraction : share of the catalog that may be head, in ``[0, 1]``

    Returns
    -------
    is_head : (n_items,) bool
    """
    if not 0.0 <= head_fraction <= 1.0:
        raise ValueError(f"head_fraction must be in [0, 1], got {head_fraction}.")
    counts = np.asarray(counts)
    if counts.ndim != 1:
        raise ValueError(f"counts must be 1-d (n_items,), got shape {counts.shape}.")
    n = counts.shape[0]
    n_head = int(np.floor(head_fraction * n + EPS))
    if n_head == 0:
        return np.zeros(n, dtype=bool)
    positive = counts > 0
    if n_head >= n:
        return positive
    # The (n_head + 1)-th largest count: everything strictly above it fits in the head.
    cut = np.partition(counts, n - n_head - 1)[n - n_head - 1]
    return positive & (counts > cut)
