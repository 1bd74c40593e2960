"""The hnswlib graph path of VectorIndex.search: tail back-up, exact scores, threshold, fallback."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from recommender.serving.index import VectorIndex

hnswlib = pytest.importorskip("hnswlib")  # a dependency of the project; the graph path is what is tested

N, D = 3000, 16


def head_biased(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, is_head): a fifth of the items are head and score ~1.6x higher, as a popularity-biased model."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, D)).astype(np.float32)
    vectors = (centers[rng.integers(0, 10, N)] + 0.5 * rng.normal(size=(N, D))).astype(np.float32)
    head = np.zeros(N, dtype=bool)
    head[rng.choice(N, N // 5, replace=False)] = True
    vectors[head] *= 1.6
    return vectors, head


def graph_index(vectors: np.ndarray, **kw) -> VectorIndex:
    index = VectorIndex("v", vectors, np.arange(10_000, 10_000 + len(vectors), dtype=np.int64), ann_min_cells=1, **kw)
    deadline = time.monotonic() + 30
    while not index.uses_ann and time.monotonic() < deadline:
        time.sleep(0.01)
    assert index.uses_ann, "the graph was not built within 30 s"
    return index


@pytest.fixture(scope="module")
def biased():
    vectors, head = head_biased()
    return graph_index(vectors), vectors, head


def best_tail_not_in(vectors: np.ndarray, tail: np.ndarray, q: np.ndarray, top: np.ndarray, k: int) -> np.ndarray:
    scores = np.where(tail, vectors @ q, -np.inf)
    scores[top] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return order[np.isfinite(scores[order])]


def test_graph_top_lacking_tail_gets_the_exact_best_tail_items_appended(biased):
    index, vectors, head = biased
    q = vectors[np.flatnonzero(head)[0]] / 1.6  # a query in a head item's neighbourhood
    tail = ~head
    plain, _ = index.search(q, 50)
    assert tail[plain].sum() < 10, "the scenario needs a graph top-50 without enough tail items"
    ids, scores = index.search(q, 50, tail=~head, min_tail=10, n_tail=20)  # a fresh mask, as services pass it
    # the graph's top 50 come first, unchanged
    np.testing.assert_array_equal(ids[:50], plain)
    # then exactly the 20 best tail items not already in, best first
    assert len(ids) == 70
    np.testing.assert_array_equal(ids[50:], best_tail_not_in(vectors, tail, q, plain, 20))
    assert tail[ids[50:]].all()
    assert len(set(ids.tolist())) == len(ids)


def test_graph_scores_are_the_exact_dot_products_so_tail_scores_rank_with_them(biased):
    index, vectors, head = biased
    q = np.random.default_rng(3).normal(size=D).astype(np.float32)
    ids, scores = index.search(q, 40, tail=~head, min_tail=40, n_tail=10)
    assert len(ids) > 40  # the back-up ran (at most 39 of a top 40 can be short of 40 tail)
    np.testing.assert_allclose(scores, vectors[ids] @ q, rtol=1e-5, atol=1e-5)
    # each part is best first
    assert np.all(np.diff(scores[:40]) <= 0) and np.all(np.diff(scores[40:]) <= 0)
    # and the graph's scores are the exact path's scores for the same items
    exact = VectorIndex("x", vectors, index.item_pks)
    e_ids, e_scores = exact.search(q, 40)
    common = np.intersect1d(ids[:40], e_ids)
    assert len(common) >= 36
    by_id = dict(zip(e_ids.tolist(), e_scores.tolist()))
    got = dict(zip(ids.tolist(), scores.tolist()))
    for i in common.tolist():
        assert got[i] == pytest.approx(by_id[i], rel=1e-6)


def test_no_back_up_when_the_graph_top_holds_enough_tail(biased):
    index, vectors, head = biased
    q = vectors[np.flatnonzero(head)[0]] / 1.6
    ids, _ = index.search(q, 50, tail=np.ones(N, dtype=bool), min_tail=5, n_tail=20)
    assert len(ids) == 50
    # nor without a quota
    assert len(index.search(q, 50, tail=~head, min_tail=0, n_tail=20)[0]) == 50


def test_back_up_never_repeats_an_item_and_stops_when_the_tail_runs_out(biased):
    index, vectors, head = biased
    q = vectors[np.flatnonzero(head)[0]] / 1.6
    plain, _ = index.search(q, 30)
    # a tail of 6 items, two of which the graph's top already holds
    tail = np.zeros(N, dtype=bool)
    tail[plain[:2]] = True
    outside = np.setdiff1d(np.arange(N), plain)[:4]
    tail[outside] = True
    ids, scores = index.search(q, 30, tail=tail, min_tail=5, n_tail=10)
    assert len(ids) == 34 and len(set(ids.tolist())) == 34
    assert set(ids[30:].tolist()) == set(outside.tolist())
    np.testing.assert_allclose(scores[30:], vectors[ids[30:]] @ q, rtol=1e-5, atol=1e-5)


def test_small_and_large_tails_give_the_same_back_up_as_the_exact_path(biased):
    # the graph path gathers a small tail's rows and indexes the full product for a large one
    index, vectors, head = biased
    exact = VectorIndex("x", vectors, index.item_pks)
    rng = np.random.default_rng(7)
    for share in (0.05, 0.8):
        tail = rng.random(N) < share
        q = rng.normal(size=D).astype(np.float32)
        g_ids, g_scores = index.search(q, 20, tail=tail, min_tail=20, n_tail=15)
        e_ids, _ = exact.search(q, 20, tail=tail, min_tail=20, n_tail=15)
        np.testing.assert_array_equal(g_ids[20:], best_tail_not_in(vectors, tail, q, g_ids[:20], 15))
        # the exact path's back-up is the same rule applied to its own top
        np.testing.assert_array_equal(e_ids[20:], best_tail_not_in(vectors, tail, q, e_ids[:20], 15))
        np.testing.assert_allclose(g_scores[20:], vectors[g_ids[20:]] @ q, rtol=1e-5, atol=1e-5)


def test_tail_index_cache_matches_by_content_not_identity():
    index = VectorIndex("v", np.eye(6, dtype=np.float32), np.arange(6, dtype=np.int64))
    mask = np.array([True, False, True, False, False, True])
    first = index._tail_index(mask)
    assert index._tail_index(mask.copy()) is first  # a fresh but equal mask hits the cache
    mask[1] = True  # edited in place: must not be served the stale indices
    np.testing.assert_array_equal(index._tail_index(mask), [0, 1, 2, 5])
    with pytest.raises(ValueError, match="tail has shape \\(3,\\); the index has 6 items"):
        index._tail_index(np.ones(3, dtype=bool))


def _new_ann_threads(before: set) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ann-build" and t not in before]


@pytest.mark.parametrize("extra_cells, builds", [(0, True), (1, False)], ids=["at-threshold", "just-below"])
def test_graph_is_built_from_the_threshold_on_only(extra_cells, builds):
    vectors = np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32)
    before = set(threading.enumerate())
    index = VectorIndex("v", vectors, np.arange(500, dtype=np.int64), ann_min_cells=500 * 8 + extra_cells)
    for t in _new_ann_threads(before):
        t.join(timeout=30)
    assert index.uses_ann is builds
    # None never builds
    assert not _new_ann_threads(before) and not VectorIndex("v", vectors, np.arange(500), ann_min_cells=None).uses_ann


def test_graph_that_cannot_answer_falls_back_to_the_exact_search(biased):
    index, vectors, head = biased

    class Failing:
        def get_current_count(self):
            return N

        def knn_query(self, q, k, num_threads=1):
            raise RuntimeError("Cannot return the results in a contiguous 2D array. Probably ef or M is too small")

    broken = VectorIndex("v", vectors, index.item_pks, ann_box=[Failing()])
    assert broken.uses_ann
    q = np.random.default_rng(4).normal(size=D).astype(np.float32)
    ids, scores = broken.search(q, 25, tail=~head, min_tail=25, n_tail=5)
    exact = VectorIndex("x", vectors, index.item_pks).search(q, 25, tail=~head, min_tail=25, n_tail=5)
    np.testing.assert_array_equal(ids, exact[0])
    np.testing.assert_array_equal(scores, exact[1])


def test_cosine_searches_stay_exact_on_a_graph_index(biased):
    index, vectors, _ = biased
    exact = VectorIndex("x", vectors, index.item_pks)
    ids, scores = index.search(vectors[17], 10, cosine=True)
    np.testing.assert_array_equal(ids, exact.search(vectors[17], 10, cosine=True)[0])
    assert ids[0] == 17 and scores[0] == pytest.approx(1.0, abs=1e-5)


def test_appended_items_share_the_graph_and_are_searched_exactly(biased):
    index, vectors, head = biased
    rng = np.random.default_rng(11)
    q = rng.normal(size=D).astype(np.float32)
    # given three new items, one of them the best match for q by far
    new_vectors = rng.normal(size=(3, D)).astype(np.float32)
    new_vectors[1] = 10 * q
    before = set(threading.enumerate())
    grown = index.with_new_items(np.array([1, 2, 3], dtype=np.int64), new_vectors)
    # then no second graph is built: the version's graph serves at once
    assert not _new_ann_threads(before) and grown.uses_ann and grown._ann is index._ann
    ids, scores = grown.search(q, 30)
    assert ids[0] == N + 1 and scores[0] == pytest.approx(float(10 * q @ q), rel=1e-5)
    np.testing.assert_allclose(scores, grown.item_vectors[ids] @ q, rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(scores) <= 0) and len(set(ids.tolist())) == 30
    # the rest is the graph's answer over the version's items
    np.testing.assert_array_equal(ids[1:], index.search(q, 29)[0])
    # and the tail back-up covers the appended items too (new items are tail)
    tail = np.append(~head, [True, True, True])
    q2 = vectors[np.flatnonzero(head)[0]] / 1.6
    top, _ = grown.search(q2, 50)
    ids, _ = grown.search(q2, 50, tail=tail, min_tail=int(tail[top].sum()) + 1, n_tail=N)
    assert {N, N + 1, N + 2} <= set(ids[50:].tolist())
    assert len(set(ids.tolist())) == len(ids) == 50 + int(tail.sum()) - int(tail[top].sum())
