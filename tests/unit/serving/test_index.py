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
    assert isinstance(index.item_vectors, np.memmap)
    q = np.ones(16, np.float32)
    np.testing.assert_array_equal(index.search(q, 10)[0], src.search(q, 10)[0])


def test_missing_file_says_which(tmp_path):
    np.save(tmp_path / "item_vectors.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(IndexUnavailable, match="item_pks.npy is missing"):
        VectorIndex.load(tmp_path, "v")


def test_shape_mismatch_is_rejected():
    with pytest.raises(IndexUnavailable, match="item_pks has 3 ids"):
        VectorIndex("v", np.zeros((2, 4), np.float32), np.arange(3))
