"""Metrics of EVALUATION.md on small hand-computed examples."""
from __future__ import annotations

import math

import numpy as np
import pytest

from recommender.ml import metrics as M


def log2(x):
    return math.log2(x)


def test_hit_matrix_marks_truth_and_ignores_padding():
    ids = np.array([[1, 2, 3], [4, -1, -1]])
    truth = [np.array([2, 9]), np.array([7])]
    np.testing.assert_array_equal(M.hit_matrix(ids, truth), [[False, True, False], [False, False, False]])


def test_hit_matrix_accepts_csr_truth():
    import scipy.sparse as sp

    truth = sp.csr_matrix(np.array([[0, 0, 1, 0], [1, 0, 0, 0]]))
    np.testing.assert_array_equal(M.hit_matrix(np.array([[2, 0], [3, 0]]), truth), [[True, False], [False, True]])


def test_hit_matrix_rejects_mismatched_users():
    with pytest.raises(ValueError, match="rows"):
        M.hit_matrix(np.zeros((2, 3), dtype=int), [np.array([1])])


def test_recall_divides_by_min_of_k_and_truth_size():
    # user 0: truth {1,2,3}, hits 1 and 2 in the top 2 -> 2/min(2,3) = 1.0
    # user 1: truth {5}, no hit -> 0
    ids = np.array([[1, 2, 8], [6, 7, 8]])
    truth = [np.array([1, 2, 3]), np.array([5])]
    hits = M.hit_matrix(ids, truth)
    n = np.array([3, 1])
    assert M.recall_at_k(hits, n, 2) == pytest.approx(0.5)
    assert M.recall_at_k(hits, n, 3) == pytest.approx((2 / 3 + 0) / 2)


def test_ndcg_hand_computed():
    # user 0: truth {5}, hit at rank 2 (0-based 1): DCG = 1/log2(3), IDCG = 1
    # user 1: truth {1, 2}, hits at ranks 1 and 3: DCG = 1 + 1/log2(4), IDCG = 1 + 1/log2(3)
    ids = np.array([[9, 5, 7], [1, 8, 2]])
    truth = [np.array([5]), np.array([1, 2])]
    hits = M.hit_matrix(ids, truth)
    expected = (1 / log2(3) + (1 + 1 / log2(4)) / (1 + 1 / log2(3))) / 2
    assert M.ndcg_at_k(hits, np.array([1, 2]), 3) == pytest.approx(expected)


def test_ndcg_is_one_for_a_perfect_list_and_ideal_uses_min_k_truth():
    ids = np.array([[1, 2]])
    truth = [np.array([1, 2, 3, 4])]  # 4 relevant, k = 2: the ideal is 2 hits on top
    assert M.ndcg_at_k(M.hit_matrix(ids, truth), np.array([4]), 2) == pytest.approx(1.0)


def test_hit_rate():
    ids = np.array([[1, 2], [3, 4], [5, 6]])
    truth = [np.array([2]), np.array([9]), np.array([5])]
    hits = M.hit_matrix(ids, truth)
    assert M.hit_rate_at_k(hits, np.array([1, 1, 1]), 2) == pytest.approx(2 / 3)
    assert M.hit_rate_at_k(hits, np.array([1, 1, 1]), 1) == pytest.approx(1 / 3)


def test_aplt_is_the_mean_tail_share_of_non_padded_lists():
    tail = np.zeros(10, dtype=bool)
    tail[[7, 8, 9]] = True
    ids = np.array([[7, 1, 2, 3], [8, 9, -1, -1]])  # 1/4 and 2/2
    assert M.aplt_at_k(ids, tail, k=4) == pytest.approx((0.25 + 1.0) / 2)


def test_tail_recall_counts_only_users_with_tail_truth():
    tail = np.zeros(10, dtype=bool)
    tail[[7, 8, 9]] = True
    ids = np.array([[7, 1], [1, 2], [9, 3]])
    truth = [np.array([7, 8, 1]), np.array([1]), np.array([8])]
    # user 0: tail truth {7, 8}, 1 hit -> 1/2; user 1: no tail truth (left out); user 2: {8}, 0
    assert M.tail_recall_at_k(ids, truth, tail, k=2) == pytest.approx(0.25)


def test_coverage_counts_distinct_items_over_candidates():
    ids = np.array([[1, 2], [2, 3], [3, -1]])
    assert M.coverage_at_k(ids, np.arange(10), k=2) == pytest.approx(3 / 10)


def test_gini_even_and_concentrated():
    cands = np.arange(4)
    assert M.gini_at_k(np.array([[0], [1], [2], [3]]), cands, k=1) == pytest.approx(0.0)
    assert M.gini_at_k(np.array([[0], [0], [0], [0]]), cands, k=1) == pytest.approx(3 / 4)
    # counts (0, 1, 1, 2): sorted x = 0,1,1,2; sum (2i-n-1) x = -3*0 -1*1 + 1*1 + 3*2 = 6; /(4*4)
    assert M.gini_at_k(np.array([[3, 1], [3, 2]]), cands, k=2) == pytest.approx(6 / 16)


def test_arp_is_mean_of_per_list_mean_popularity():
    pop = np.array([10, 0, 4, 2])
    ids = np.array([[0, 2], [3, -1]])
    assert M.arp_at_k(ids, pop, k=2) == pytest.approx(((10 + 4) / 2 + 2) / 2)


def test_cold_hit_is_share_of_cold_truth_pairs_hit():
    cold = np.zeros(10, dtype=bool)
    cold[[8, 9]] = True
    ids = np.array([[8, 1], [2, 3]])
    truth = [np.array([8, 9]), np.array([9, 2])]  # 3 cold pairs, 1 hit
    assert M.cold_hit_at_k(ids, truth, cold, k=2) == pytest.approx(1 / 3)
    assert math.isnan(M.cold_hit_at_k(ids, [np.array([1]), np.array([2])], cold, k=2))


def test_evaluate_lists_returns_every_metric_and_needs_20():
    rng = np.random.default_rng(0)
    ids = np.stack([rng.permutation(50)[:20] for _ in range(5)])
    truth = [rng.choice(50, 3, replace=False) for _ in range(5)]
    tail = np.arange(50) >= 10
    cold = np.arange(50) >= 48
    out = M.evaluate_lists(ids, truth, candidates=np.arange(50), tail=tail, cold=cold, popularity=np.arange(50)[::-1])
    assert set(out) == set(M.METRIC_NAMES)
    assert 0 <= out["NDCG@10"] <= 1 and out["Recall@20"] >= out["Recall@10"] - 1e-12
    with pytest.raises(ValueError, match="20"):
        M.evaluate_lists(ids[:, :10], truth, candidates=np.arange(50), tail=tail, cold=cold, popularity=np.ones(50))
