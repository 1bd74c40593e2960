"""The index's exact top-n: the sampled threshold never changes the answer."""
from __future__ import annotations

import numpy as np
import pytest

from recommender.serving.index import _top


def reference(scores: np.ndarray, n: int) -> np.ndarray:
    order = np.lexsort((np.arange(len(scores)), -scores))
    return order[:n]


@pytest.mark.parametrize("m", [10, 4095, 4096, 50_000, 100_003])
@pytest.mark.parametrize("n", [1, 20, 200, 600])
def test_top_n_is_exact_and_ordered(m, n):
    rng = np.random.default_rng(m * 7 + n)
    for scores in (
        rng.normal(size=m).astype(np.float32),
        rng.integers(0, 50, m).astype(np.float32),  # many ties
        np.sort(rng.normal(size=m)).astype(np.float32),  # the best all at the end of the sample stride
        np.where(rng.random(m) < 0.9, -np.inf, rng.normal(size=m)).astype(np.float32),  # masked
    ):
        got = _top(scores, n)
        want = reference(scores, n)
        assert len(got) == min(n, m)
        # then the same scores, best first, ties in index order (which tied item is cut may differ)
        assert np.array_equal(scores[got], scores[want])
        assert len(set(got.tolist())) == len(got)
        same = scores[got][1:] == scores[got][:-1]
        assert (got[1:][same] > got[:-1][same]).all()


def test_a_sample_that_misjudges_falls_back_to_the_full_partition():
    # given 60 high scores, all on sampled positions: the threshold lets only 60 < n through
    m, n = 40_960, 200
    scores = np.zeros(m, dtype=np.float32)
    scores[: 60 * (m // 4096) : m // 4096] = 1.0
    got = _top(scores, n)
    assert np.array_equal(scores[got], np.sort(scores)[::-1][:n])
    assert sorted(got[:60].tolist()) == list(range(0, 600, 10))
    assert (np.diff(got[60:]) > 0).all()  # ties in index order
