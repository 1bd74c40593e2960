"""The in-memory vector index: exact top-n, pk maps, profiles, loading artifacts as memory maps."""
from __future__ import annotations

import numpy as np
import pytest

from recommender.serving.index import IndexUnavailable, VectorIndex


def make_index(n: int = 500, d: int = 16, seed: int = 0) -> VectorIndex:
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n, d)).astype(np.float32)
    pks = rng.permutation(np.arange(1000, 1000 + 3 * n, 3))  # not in index order
    users = rng.normal(size=(7, d)).astype(np.float32)
    users[3] = 0.0
    return VectorIndex("v", items, pks.astype(np.int64), users, np.arange(10, 17, dtype=np.int64))


def test_search_matches_brute_force():
    index = make_index()
    q = np.random.default_rng(1).normal(size=16).astype(np.float32)
    ids, scores = index.search(q, 20)
    brute = np.argsort(-(index.item_vectors @ q), kind="stable")[:20]
    np.testing.assert_array_equal(ids, brute)
    assert np.all(np.diff(scores) <= 0)
    # n larger than the catalog returns everything, sorted
    ids, _ = index.search(q, 10_000)
    assert sorted(ids.tolist()) == list(range(500))


def test_cosine_search_ranks_the_item_itself_first():
    index = make_index()
    ids, scores = index.search(index.item_vectors[42], 5, cosine=True)
    assert ids[0] == 42 and scores[0] == pytest.approx(1.0, abs=1e-5)


def test_pk_lookup_and_user_vectors():
    index = make_index()
    pks = index.item_pks[[5, 0, 499]]
    np.testing.assert_array_equal(index.item_index(np.append(pks, 1)), [5, 0, 499, -1])
    assert index.user_vector(12) is not None
    assert index.user_vector(13) is None  # an all-zero row means "no user space"
    assert index.user_vector(999) is None and index.user_vector(None) is None


def test_profile_is_a_weighted_mean_of_unit_vectors():
    index = make_index()
    q = index.profile(np.array([1, 2]), np.array([1.0, 0.0]))
    unit = index.item_vectors[1] / np.linalg.norm(index.item_vectors[1])
    np.testing.assert_allclose(q, unit, rtol=1e-5)
    assert index.profile(np.zeros(0, np.int64), np.zeros(0)) is None


def test_load_memory_maps_the_artifact(tmp_path):
    src = make_index()
    for stem in ("item_vectors", "item_pks", "user_vectors", "user_pks"):
        np.save(tmp_path / f"{stem}.npy", getattr(src, stem))
    index = VectorIndex.load(tmp_path, "v")
    # A view of the file's pages (shared between processes), not a private copy.
    assert isinstance(index.item_vectors.base, np.memmap) and not index.item_vectors.flags.owndata
    assert not index.item_vectors.flags.writeable
    q = np.ones(16, np.float32)
    np.testing.assert_array_equal(index.search(q, 10)[0], src.search(q, 10)[0])


def test_missing_file_says_which(tmp_path):
    np.save(tmp_path / "item_vectors.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(IndexUnavailable, match="item_pks.npy is missing"):
        VectorIndex.load(tmp_path, "v")


def test_shape_mismatch_is_rejected():
    with pytest.raises(IndexUnavailable, match="item_pks has 3 ids"):
        VectorIndex("v", np.zeros((2, 4), np.float32), np.arange(3))


def test_ann_graph_takes_over_and_agrees_with_exact_search():
    pytest.importorskip("hnswlib")
    import time

    base = make_index(n=2000, d=16)
    index = VectorIndex("v", base.item_vectors, base.item_pks, ann_min_cells=1)
    deadline = time.monotonic() + 30
    while not index.uses_ann and time.monotonic() < deadline:
        time.sleep(0.01)
    assert index.uses_ann
    q = np.random.default_rng(5).normal(size=16).astype(np.float32)
    got, scores = index.search(q, 50)
    exact, exact_scores = base.search(q, 50)
    assert len(set(got.tolist()) & set(exact.tolist())) >= 45
    np.testing.assert_allclose(scores[:5], exact_scores[:5], rtol=1e-4)
    # cosine searches (similar items) stay exact
    np.testing.assert_array_equal(index.search(q, 10, cosine=True)[0], base.search(q, 10, cosine=True)[0])


def test_tail_backup_appends_the_best_tail_items_only_when_needed():
    index = make_index(n=300, d=8)
    q = np.random.default_rng(2).normal(size=8).astype(np.float32)
    top, _ = index.search(q, 10)
    # given a head made of exactly the top 10 (a popularity-biased model)
    tail = np.ones(300, dtype=bool)
    tail[top] = False
    ids, scores = index.search(q, 10, tail=tail, min_tail=4, n_tail=5)
    np.testing.assert_array_equal(ids[:10], top)
    assert len(ids) == 15 and len(set(ids.tolist())) == 15 and tail[ids[10:]].all()
    # the back-up is the best of the tail, in order
    masked = np.where(tail, index.item_vectors @ q, -np.inf)
    np.testing.assert_array_equal(ids[10:], np.argsort(-masked, kind="stable")[:5])
    # with enough tail among the top, nothing is added
    assert len(index.search(q, 10, tail=~tail, min_tail=4, n_tail=5)[0]) == 10


def test_similarity_mask_keeps_popularity_columns_out_of_item_cosine():
    from recommender.serving.index import VectorIndex

    # given two items with the same description columns, one with large popularity columns,
    # and a third popular item that describes something else
    vectors = np.array(
        [
            [1.0, 0.0, 0.0, 0.0],  # new item: what it is = (1, 0); popularity = (0, 0)
            [1.0, 0.0, 3.0, 3.0],  # its twin, a best-seller
            [0.0, 1.0, 3.0, 3.0],  # an unrelated best-seller
        ],
        dtype=np.float32,
    )
    pks = np.array([10, 11, 12])
    plain = VectorIndex(name="v", item_vectors=vectors, item_pks=pks)
    masked = VectorIndex(name="v", item_vectors=vectors, item_pks=pks,
                         similarity_mask=np.array([1, 1, 0, 0], dtype=np.float32))
    # without the mask the two best-sellers look alike and the new item's twin is far away
    assert plain.cosine(np.array([1]), np.array([2]))[0, 0] > plain.cosine(np.array([1]), np.array([0]))[0, 0]
    # with it, item-to-item similarity is about what the items are
    assert masked.cosine(np.array([0]), np.array([1]))[0, 0] == pytest.approx(1.0)
    ids, scores = masked.search(vectors[0], 3, cosine=True)
    assert ids[0] in (0, 1) and set(ids[:2]) == {0, 1} and scores[1] == pytest.approx(1.0)
    # and dot-product scores (what users are ranked by) still use every column
    ids, _ = masked.search(np.array([0, 0, 1, 1], dtype=np.float32), 1)
    assert ids[0] in (1, 2)
