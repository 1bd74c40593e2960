"""Test data for the pure-numpy ml tests: a tiny synthetic shop with two taste clusters.

Imported by name (``from ml_testdata import ...``): conftest puts this folder on sys.path.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:  # runnable with -p no:django, which does not add the project dir
    sys.path.insert(0, str(REPO))

from recommender.ml.base import EVENT_CODES, Interactions  # noqa: E402

# The shared folder next to the repository (datasets are read there, never copied in).
from tests.conftest import ONLINE_RETAIL, SHARED_DIR as SHARED, require_shared  # noqa: E402,F401

DAY = 86_400
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z, a fixed clock

N_USERS, N_ITEMS, N_COLD, DIM = 40, 40, 4, 16


def make_synthetic(seed: int = 0) -> tuple[Interactions, np.ndarray]:
    """Two taste clusters over 120 days, plus cold items that have text but no events.

    Users 0-19 buy only items 0-17, users 20-39 only items 18-35 (within a cluster item j is
    more popular the lower j is). Items 36-39 are cold: never bought. Item texts are two
    cluster directions plus noise (cold items 36, 37 in cluster A, 38, 39 in cluster B).

    Returns
    -------
    data : Interactions sorted by time, with item_text (N_ITEMS, DIM)
    cluster : (N_ITEMS,) int 0 or 1
    """
    rng = np.random.default_rng(seed)
    cluster = np.array([0] * 18 + [1] * 18 + [0, 0, 1, 1])
    users, items, ts = [], [], []
    for u in range(N_USERS):
        c = 0 if u < N_USERS // 2 else 1
        pool = np.flatnonzero(cluster[:36] == c)
        p = 1.0 / (np.arange(len(pool)) + 2.0)
        chosen = rng.choice(pool, size=8, replace=False, p=p / p.sum())
        for it in chosen:
            for _ in range(rng.integers(1, 3)):
                users.append(u)
                items.append(int(it))
                ts.append(T0 + int(rng.integers(0, 120 * DAY)))
    order = np.argsort(ts, kind="stable")
    centres = np.zeros((2, DIM), dtype=np.float32)
    centres[0, 0] = centres[1, 1] = 1.0
    text = centres[cluster] + 0.3 * rng.standard_normal((N_ITEMS, DIM)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    n = len(users)
    data = Interactions(
        user=np.asarray(users, dtype=np.int32)[order],
        item=np.asarray(items, dtype=np.int32)[order],
        timestamp=np.asarray(ts, dtype=np.int64)[order],
        n_users=N_USERS,
        n_items=N_ITEMS,
        event_type=np.full(n, EVENT_CODES["purchase"], dtype=np.int8),
        weight=np.full(n, 8.0, dtype=np.float32),
        item_text=text.astype(np.float32),
        user_ids=np.array([f"u{i}" for i in range(N_USERS)], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(N_ITEMS)], dtype=object),
    )
    return data, cluster




def make_dataset(seed: int = 0):
    """The synthetic shop as a :class:`~recommender.ml.datasets.Dataset` (texts: cluster words)."""
    from recommender.ml.datasets import Dataset

    data, cluster = make_synthetic(seed)
    first_seen = np.full(data.n_items, -1, dtype=np.int64)
    for i in range(data.n_items):
        t = data.timestamp[data.item == i]
        if len(t):
            first_seen[i] = t.min()
    words = np.array(["garden", "kitchen"])[cluster]
    empty = np.full(data.n_items, "", dtype=object)
    return Dataset(
        name="synthetic",
        interactions=data,
        item_ids=data.item_ids,
        titles=np.array([f"{w} thing {i}" for i, w in enumerate(words)], dtype=object),
        descriptions=empty,
        categories=empty.copy(),
        brands=empty.copy(),
        prices=np.linspace(1, 40, data.n_items),
        first_seen=first_seen,
        user_ids=data.user_ids,
    )
