"""The compiled greedy fill (``_greedy.c``) picks exactly what the numpy reference picks."""
from __future__ import annotations

import os

import numpy as np
import pytest

from recommender.ranking import policy as pol
from recommender.ranking.policy import PolicyConfig, rerank

from ranking_factories import NOW, fill_world, make_catalog

compiled = pytest.mark.skipif(
    not pol.ACCELERATED and os.environ.get("CI") != "true",
    reason="the C extension is not built here (no compiler); CI builds it",
)


def test_ci_builds_the_compiled_fill():
    """Under CI the extension must be there: a missing build would silently run numpy."""
    if os.environ.get("CI") == "true":
        assert pol.ACCELERATED, "recommender/ranking/_greedy.c was not built; run `make install`"


def _random_policy(rng: np.random.Generator) -> PolicyConfig:
    return PolicyConfig(
        diversity=float(rng.choice([0.0, 0.0, 0.05, 0.2, 0.5, 0.9, 1.0])),
        min_tail_share=float(rng.choice([0.0, 0.3, 0.5, 1.0])),
        exploration_positions=tuple(int(p) for p in rng.choice(30, int(rng.integers(0, 4)), replace=False)),
    )


@compiled
@pytest.mark.parametrize("seed", range(8))
def test_compiled_fill_picks_what_the_numpy_fill_picks(seed):
    rng = np.random.default_rng(seed)
    ran_mmr = ran_plain = 0
    for _ in range(150):
        m = int(rng.integers(1, 260))
        keep, adj, is_tail, items, catalog, pins = fill_world(rng, m, int(rng.integers(0, 3)))
        slots = int(rng.integers(0, 30))
        policy = _random_policy(rng)
        for prune in (True, False):
            args = (keep, adj, is_tail, items, catalog, policy, pins, slots)
            fast = pol._fill(*args, prune=prune)
            assert fast == pol._fill(*args, prune=prune, accelerated=False), (seed, m, slots, policy)
        ran_mmr += policy.diversity > 0
        ran_plain += policy.diversity == 0
    assert ran_mmr > 50 and ran_plain > 20


@compiled
def test_compiled_fill_breaks_ties_like_numpy():
    """Equal scores and identical vectors: the first row in pool order wins, as numpy's argmax."""
    n = 12
    vectors = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (n, 1))
    catalog = make_catalog(n, is_head=np.arange(n) % 2 == 0, ever_shown=np.arange(n) % 3 != 0, vectors=vectors)
    items = np.arange(n)
    adj = np.zeros(n)
    keep = np.arange(n)
    for diversity in (0.0, 0.3, 1.0):
        policy = PolicyConfig(diversity=diversity, min_tail_share=0.5, exploration_positions=(2, 5))
        args = (keep, adj, ~catalog.is_head, items, catalog, policy, np.zeros(0, np.int64), 8)
        assert pol._fill(*args) == pol._fill(*args, accelerated=False)


@compiled
def test_rerank_is_the_same_list_with_and_without_the_compiled_fill(monkeypatch):
    rng = np.random.default_rng(7)
    for _ in range(60):
        n = 300
        catalog = make_catalog(
            n, is_head=rng.random(n) < 0.2, ever_shown=rng.random(n) < 0.7,
            impressions_today=rng.integers(0, 50, n), category=rng.integers(0, 6, n),
            vectors=rng.normal(size=(n, 16)).astype(np.float32),
        )
        policy = PolicyConfig(
            tail_boost=float(rng.choice([0.0, 0.5])), min_tail_share=0.3, diversity=0.2,
            exploration_positions=(3,), pinned=(int(rng.integers(n)),), exposure_spreading=0.5,
        )
        cands = rng.choice(n, 200, replace=False)
        scores = rng.normal(size=200)
        fast = rerank(cands, scores, catalog, policy, 20, NOW, seed=5)
        with monkeypatch.context() as m:
            m.setattr(pol, "_greedy", None)
            slow = rerank(cands, scores, catalog, policy, 20, NOW, seed=5)
        assert fast.ids.tolist() == slow.ids.tolist()
        assert fast.reasons == slow.reasons
        assert fast.segments == slow.segments


@compiled
def test_compiled_fill_rejects_arrays_of_the_wrong_shape():
    ok = dict(adj=np.zeros(3), tail=np.zeros(3, bool), never=np.zeros(3, bool))
    with pytest.raises(ValueError, match="tail"):
        pol._greedy.fill(ok["adj"], np.zeros(2, bool), ok["never"], np.zeros(0, bool), None, None,
                         0.0, 0.0, 0, 1, 0)
    with pytest.raises(ValueError, match="table"):
        pol._greedy.fill(ok["adj"], ok["tail"], ok["never"], np.zeros(0, bool), np.zeros(4, np.float32),
                         np.zeros(3, np.float32), 0.5, 0.0, 0, 1, 0)
    with pytest.raises(ValueError, match="slots"):
        pol._greedy.fill(ok["adj"], ok["tail"], ok["never"], np.zeros(0, bool), None, None, 0.0, 0.0, 0, 4, 0)


def _selection_world(rng: np.random.Generator):
    """A catalog, a policy, a request and candidates with every case the selection handles:
    missing items (-1), non-finite scores, repeated items, tied scores (0.0 and -0.0 among
    them), inactive and out-of-stock items, caps (one for all, per item), categories (code -1:
    none), unknown prices and bounds, buried, excluded and bought items."""
    n = int(rng.integers(1, 400))
    price = rng.uniform(1, 100, n)
    price[rng.random(n) < 0.1] = np.nan
    catalog = make_catalog(
        n, is_head=rng.random(n) < 0.3, category=rng.integers(-1, 8, n), price=price,
        in_stock=rng.random(n) < 0.85, impressions_today=rng.integers(0, 30, n),
        is_active=None if rng.random() < 0.3 else rng.random(n) < 0.9,
    )
    some = lambda p: tuple(int(i) for i in rng.choice(n, int(rng.integers(0, max(1, int(n * p)))), replace=True))  # noqa: E731
    policy = PolicyConfig(
        buried=some(0.05),
        daily_impression_cap=None if rng.random() < 0.4 else int(rng.integers(0, 30)),
        item_impression_caps={} if rng.random() < 0.5 else {i: int(rng.integers(0, 40)) for i in some(0.05)},
    )
    bounds = rng.choice(4)  # none, min, max, both
    request = pol.RequestFilters(
        categories=None if rng.random() < 0.5 else tuple(int(c) for c in rng.choice(np.arange(-1, 8), 3)),
        min_price=float(rng.uniform(1, 50)) if bounds in (1, 3) else None,
        max_price=float(rng.uniform(50, 100)) if bounds in (2, 3) else None,
        exclude_ids=some(0.05), in_stock_only=bool(rng.random() < 0.7),
    )
    m = int(rng.integers(0, 3 * n))
    cand = rng.integers(-1, n, m)
    raw = rng.choice([-1.0, -0.0, 0.0, 0.5, 2.0], m) if rng.random() < 0.3 else rng.normal(size=m)
    raw[rng.random(m) < 0.05] = np.nan
    raw[rng.random(m) < 0.02] = np.inf
    bought = None if rng.random() < 0.3 else rng.integers(0, n, int(rng.integers(0, 20)))
    return cand, raw, catalog, policy, request, bought


@compiled
@pytest.mark.parametrize("seed", range(6))
def test_compiled_selection_keeps_the_rows_the_numpy_selection_keeps(seed):
    rng = np.random.default_rng(100 + seed)
    kept = dropped = 0
    for _ in range(200):
        cand, raw, catalog, policy, request, bought = _selection_world(rng)
        rows, items, index = pol._select_rows(cand, raw, catalog, policy, request, bought)
        ref_rows, ref_items, ref_index = pol._select_rows(cand, raw, catalog, policy, request, bought,
                                                          accelerated=False)
        assert rows.tolist() == ref_rows.tolist(), seed
        assert items.tolist() == ref_items.tolist()
        assert index.sorted.tolist() == ref_index.sorted.tolist()
        assert index.order.tolist() == ref_index.order.tolist()
        kept += len(rows)
        dropped += len(cand) - len(rows)
    assert kept > 1000 and dropped > 1000  # both sides of every filter were exercised


@compiled
def test_compiled_selection_rejects_arrays_of_the_wrong_shape():
    catalog = make_catalog(5)
    args = [np.array([0, 1], np.int64), np.array([0, 1], np.int64), np.array([1.0, 0.5]), None, catalog.in_stock, catalog.impressions_today,
            np.inf, np.zeros(0, np.int64), np.zeros(0), None, catalog.category, catalog.price, False,
            -np.inf, np.inf, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
            np.empty(2, np.int64)]
    assert pol._greedy.select(*args) == 2
    for at, bad, name in ((0, np.zeros(3, np.int64), "order"), (2, np.zeros(3), "raw"),
                          (4, np.ones(4, bool), "in_stock"), (8, np.zeros(1), "cap_values"),
                          (10, np.zeros(6, np.int64), "category")):
        broken = list(args)
        broken[at] = bad
        with pytest.raises(ValueError, match=name):
            pol._greedy.select(*broken)
    broken = list(args)
    broken[0] = np.array([0, 2], np.int64)  # not a permutation of 2 rows
    with pytest.raises(ValueError, match="permutation"):
        pol._greedy.select(*broken)
    broken = list(args)
    broken[1] = np.array([0, 5], np.int64)  # item 5 of a 5-item catalog
    with pytest.raises(ValueError, match="outside the catalog"):
        pol._greedy.select(*broken)
    broken = list(args)
    broken[-1] = np.empty(1, np.int64)
    with pytest.raises(ValueError, match="out"):
        pol._greedy.select(*broken)
