"""The global temporal split: no leakage, new-to-user truth, cold items, head/tail cut."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ml_testdata import DAY, T0, make_synthetic
from recommender.ml.base import EVENT_CODES, Interactions
from recommender.ml.protocol import temporal_split, validation_split


def _events(rows, n_users, n_items, types=None):
    """rows: (user, item, day)."""
    u, i, d = (np.array(c) for c in zip(*rows))
    order = np.argsort(d, kind="stable")
    et = np.full(len(rows), EVENT_CODES["purchase"], np.int8) if types is None else np.array(types, np.int8)
    return Interactions(
        user=u[order].astype(np.int32),
        item=i[order].astype(np.int32),
        timestamp=(T0 + d[order] * DAY).astype(np.int64),
        n_users=n_users,
        n_items=n_items,
        event_type=et[order],
    )


@pytest.fixture
def hand():
    # Last event on day 100 -> cut at day 70. Items 0-5 in training, item 6 first seen in test
    # (cold), item 7 never seen. User 3 only appears in test (not a test user).
    rows = [
        (0, 0, 1), (0, 1, 10), (1, 0, 20), (1, 2, 30), (2, 0, 40), (2, 3, 50), (0, 4, 60), (1, 5, 65),
        (2, 0, 69),
        (0, 1, 75),  # user 0 re-buys item 1: not new, not truth
        (0, 2, 80), (0, 6, 85),  # user 0: new items 2 and 6 (cold)
        (1, 0, 90),  # user 1 only re-buys: not a test user
        (2, 5, 95), (2, 5, 96),  # user 2: new item 5 twice -> one truth pair
        (3, 1, 100),  # user 3 has no training history
    ]
    return _events(rows, n_users=4, n_items=8)


def test_cut_is_30_days_before_the_last_event_and_nothing_leaks(hand):
    s = temporal_split(hand, 30)
    assert s.end == T0 + 100 * DAY and s.cut == T0 + 70 * DAY
    assert (s.train.timestamp < s.cut).all() and (s.test.timestamp >= s.cut).all()
    assert len(s.train.user) + len(s.test.user) == len(hand.user)
    assert s.train.n_items == hand.n_items and s.train.n_users == hand.n_users


def test_test_users_and_new_to_user_truth(hand):
    s = temporal_split(hand, 30)
    np.testing.assert_array_equal(s.users, [0, 2])
    np.testing.assert_array_equal(s.truth[0], [2, 6])
    np.testing.assert_array_equal(s.truth[1], [5])
    np.testing.assert_array_equal(s.exclude[0], [0, 1, 4])
    np.testing.assert_array_equal(s.exclude[1], [0, 3])
    for ex, tr in zip(s.exclude, s.truth):
        assert not np.isin(tr, ex).any()


def test_candidates_are_training_items_plus_cold_items(hand):
    s = temporal_split(hand, 30)
    np.testing.assert_array_equal(s.candidates, [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(np.flatnonzero(s.cold), [6])
    assert not s.candidate_mask[7], "an item never seen is not a candidate"


def test_head_is_top_20_percent_of_training_items_by_distinct_users(hand):
    s = temporal_split(hand, 30)
    # distinct training users: item 0 -> 3, others 1 each; 6 training items -> ceil(1.2) = 2 head
    assert s.popularity[0] == 3 and s.popularity[2] == 1
    assert s.head.sum() == math.ceil(0.2 * 6)
    assert s.head[0] and s.head[1], "ties are broken by the lower index"
    np.testing.assert_array_equal(s.tail, s.candidate_mask & ~s.head)
    assert s.tail[6], "cold items are tail"


def test_impressions_are_not_interactions():
    rows = [(0, 0, 1), (0, 1, 2), (1, 1, 3), (0, 2, 50), (0, 3, 60), (1, 2, 61)]
    types = [5, 7, 5, 5, 7, 7]  # purchase, impression, purchase, purchase, impression, impression
    s = temporal_split(_events(rows, 2, 4, types), 30)
    np.testing.assert_array_equal(s.users, [0])  # user 1 only saw an impression in test
    np.testing.assert_array_equal(s.truth[0], [2])  # impression of item 3 is not truth
    np.testing.assert_array_equal(s.exclude[0], [0])  # the impression of item 1 is not "had"
    assert s.popularity[1] == 1


def test_validation_is_the_last_30_days_of_training():
    data, _ = make_synthetic()
    s = temporal_split(data, 30)
    v = validation_split(s, 30)
    assert v.end == s.cut and v.cut == s.cut - 30 * DAY
    assert (v.test.timestamp < s.cut).all() and (v.train.timestamp < v.cut).all()
    assert len(v.train.user) + len(v.test.user) == len(s.train.user)
    assert len(v.users) > 0 and len(s.users) > 0


def test_split_of_too_short_data_says_so():
    with pytest.raises(ValueError, match="too short"):
        temporal_split(_events([(0, 0, 1), (0, 1, 2)], 1, 2), 30)
