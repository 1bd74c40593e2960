"""Head/tail segments: the head is the top X% of items by recent interactions."""
from __future__ import annotations

import math
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from recommender.ranking.segments import head_mask, recent_interaction_counts
from ranking_factories import NOW

counts_arrays = st.integers(0, 40).flatmap(
    lambda n: hnp.arrays(np.int64, n, elements=st.integers(0, 6))
)


def test_top_fraction_is_head():
    # given 10 items with distinct counts
    counts = np.array([5, 9, 0, 7, 1, 3, 8, 2, 6, 4])
    # when the head is 30% of the catalog
    head = head_mask(counts, 0.3)
    # then it is the three most interacted items
    assert np.flatnonzero(head).tolist() == [1, 3, 6]


def test_ties_at_the_cut_all_go_to_the_tail():
    counts = np.array([9, 5, 5, 5, 1])
    # 40% of 5 items is 2, but items 1..3 tie for second place: only item 0 is head.
    assert head_mask(counts, 0.4).tolist() == [True, False, False, False, False]


def test_items_without_interactions_are_never_head():
    counts = np.array([0, 0, 3, 0])
    assert head_mask(counts, 1.0).tolist() == [False, False, True, False]


def test_fraction_as_written_is_not_lost_to_rounding():
    # 0.29 * 100 is 28.999... in floating point; 29 items are still head.
    counts = np.arange(100, 0, -1)
    assert head_mask(counts, 0.29).sum() == 29


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_fraction_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError, match="head_fraction"):
        head_mask(np.ones(3), bad)


@settings(deadline=None)
@given(counts=counts_arrays, fraction=st.floats(0, 1))
def test_head_is_the_largest_strict_top_group_that_fits(counts, fraction):
    head = head_mask(counts, fraction)
    limit = math.floor(fraction * len(counts) + 1e-9)
    # then it fits,
    assert head.sum() <= limit
    # every head item beats every tail item, and no item without interactions is head,
    if head.any():
        assert counts[head].min() > (counts[~head].max() if (~head).any() else -1)
        assert counts[head].min() > 0
    # and the next group of tied tail items (if it has interactions) would not fit.
    rest = counts[~head]
    if len(rest) and rest.max() > 0:
        assert head.sum() + (rest == rest.max()).sum() > limit


@settings(deadline=None)
@given(counts=counts_arrays, fraction=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_segment_does_not_depend_on_item_order(counts, fraction, seed):
    perm = np.random.default_rng(seed).permutation(len(counts))
    assert np.array_equal(head_mask(counts, fraction)[perm], head_mask(counts[perm], fraction))


def test_recent_counts_use_only_the_window():
    now_ts = NOW.timestamp()
    day = 86_400
    item = np.array([0, 0, 1, 2, 2])
    ts = np.array([now_ts - 1, now_ts - 8 * day, now_ts - 7 * day, now_ts, now_ts + 5])
    counts = recent_interaction_counts(item, ts, 4, NOW, window_days=7)
    # event at exactly 7 days ago is in, 8 days ago and the future are out
    assert counts.tolist() == [1.0, 1.0, 1.0, 0.0]


def test_recent_counts_need_an_aware_clock():
    with pytest.raises(ValueError, match="timezone-aware"):
        recent_interaction_counts(np.array([0]), np.array([0]), 1, NOW.replace(tzinfo=None), 7)
