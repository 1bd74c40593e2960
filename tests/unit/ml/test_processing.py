"""Cleaning, weighting and sessions of behaviour events (recommender.ml.processing)."""
from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from recommender.ml.base import EVENT_CODES, Interactions
from recommender.ml.processing import (
    assign_sessions,
    burst_users,
    clean_interactions,
    split_impressions,
    user_time_order,
    weight_interactions,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
T = int(NOW.timestamp()) - 10 * 86_400  # a fixed moment ten days before NOW
V, C, A, P, I = (EVENT_CODES[k] for k in ("view", "click", "add_to_cart", "purchase", "impression"))


def events(rows, n_users: int = 10, n_items: int = 10, value=None) -> Interactions:
    """Interactions from ``(user, item, timestamp, event_type)`` rows, in the given order."""
    rows = list(rows)
    u, i, t, e = (np.array(col) for col in zip(*rows)) if rows else ([], [], [], [])
    extra = {} if value is None else {"value": np.asarray(value, dtype=np.float32)}
    return Interactions(
        user=np.asarray(u, dtype=np.int32),
        item=np.asarray(i, dtype=np.int32),
        timestamp=np.asarray(t, dtype=np.int64),
        event_type=np.asarray(e, dtype=np.int8),
        n_users=n_users,
        n_items=n_items,
        extra=extra,
    )


def rows_of(data: Interactions) -> list[tuple[int, int, int, int]]:
    return list(zip(data.user.tolist(), data.item.tolist(), data.timestamp.tolist(), data.event_type.tolist()))


# --------------------------------------------------------------------------- duplicates


def test_exact_and_near_duplicates_keep_the_first():
    # given a double click, a retried send and a chain of rapid repeats of one (user, item, type)
    rows = [
        (0, 1, T, V),  # kept: first
        (0, 1, T, V),  # exact duplicate
        (0, 2, T + 1, V),  # other item in between: kept
        (0, 1, T + 1, V),  # 1 s after a view of item 1: duplicate
        (0, 1, T + 3, V),  # 2 s after the previous repeat: duplicate (a run collapses)
        (0, 1, T + 6, V),  # 3 s later: a new view, kept
        (0, 1, T + 1, C),  # other type: kept
        (1, 1, T, V),  # other user: kept
    ]
    data = events(rows, value=np.arange(len(rows)))
    # when cleaned with the default 2 s window
    out, report = clean_interactions(data, now=NOW)
    # then exactly the three repeats are gone, the first of each run stays, extras follow
    assert report.n_duplicates == 3
    assert rows_of(out) == [rows[0], rows[2], rows[5], rows[6], rows[7]]
    assert out.extra["value"].tolist() == [0, 2, 5, 6, 7]


def test_zero_window_drops_exact_duplicates_only():
    data = events([(0, 1, T, V), (0, 1, T, V), (0, 1, T + 1, V)])
    out, report = clean_interactions(data, now=NOW, duplicate_window_s=0)
    assert report.n_duplicates == 1
    assert out.timestamp.tolist() == [T, T + 1]


def test_input_order_does_not_change_what_is_kept():
    # given the same events shuffled (Interactions is normally time-sorted, but need not be)
    rows = [(0, 1, T + k, V) for k in (0, 1, 5, 6, 20)] + [(1, 1, T + 1, V), (1, 2, T + 2, C)]
    rng = np.random.default_rng(3)
    shuffled = [rows[j] for j in rng.permutation(len(rows))]
    # when both are cleaned
    a, _ = clean_interactions(events(rows), now=NOW)
    b, _ = clean_interactions(events(shuffled), now=NOW)
    # then the same events survive, and the shuffled result keeps the shuffled order
    assert sorted(rows_of(a)) == sorted(rows_of(b)) == sorted(
        [(0, 1, T, V), (0, 1, T + 5, V), (0, 1, T + 20, V), (1, 1, T + 1, V), (1, 2, T + 2, C)]
    )
    assert rows_of(b) == [r for r in shuffled if r in rows_of(b)]


def _reference_duplicates(rows, window):
    """Brute force: an event is a duplicate if the previous same-key event is <= window older."""
    order = sorted(range(len(rows)), key=lambda j: (rows[j][2], j))
    last: dict = {}
    dup = set()
    for j in order:
        u, i, t, e = rows[j]
        if (u, i, e) in last and t - last[(u, i, e)] <= window:
            dup.add(j)
        last[(u, i, e)] = t
    return dup


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 12), st.sampled_from([V, C])),
        max_size=40,
    ),
    window=st.integers(0, 3),
)
def test_duplicates_match_a_brute_force_reference(rows, window):
    rows = [(u, i, T + t, e) for u, i, t, e in rows]
    out, report = clean_interactions(events(rows), now=NOW, duplicate_window_s=window, burst_limits=())
    dup = _reference_duplicates(rows, window)
    assert report.n_duplicates == len(dup)
    assert rows_of(out) == [r for j, r in enumerate(rows) if j not in dup]


# --------------------------------------------------------------------------- timestamps


def test_impossible_timestamps_are_removed_and_counted():
    floor = datetime(2020, 1, 1, tzinfo=timezone.utc)
    f = int(floor.timestamp())
    now = int(NOW.timestamp())
    data = events([(0, 1, f - 1, V), (0, 2, f, V), (0, 3, now, V), (0, 4, now + 1, V), (1, 1, 5, V)])
    out, report = clean_interactions(data, now=NOW, min_timestamp=floor)
    assert (report.n_too_early, report.n_in_future) == (2, 1)
    assert out.item.tolist() == [2, 3]


def test_naive_now_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="timezone-aware"):
        clean_interactions(events([(0, 1, T, V)]), now=datetime(2026, 1, 1))


# --------------------------------------------------------------------------- bots


def _burst(user: int, n: int, span_s: int, item0: int = 0):
    """n events of distinct items, first at T and last at T + span_s."""
    return [(user, item0 + j, T + (j * span_s) // (n - 1), V) for j in range(n)]


def test_more_than_100_events_within_60_s_is_a_bot():
    rows = (
        _burst(0, 101, 59)  # 101 events inside 60 s: bot
        + _burst(1, 100, 10)  # 100 events inside 10 s: at the limit, not a bot
        + _burst(2, 101, 60)  # 101 events over 60 s: no 60 s window holds them all
        + [(3, j, T, I) for j in range(300)]  # impressions are logged in lists: never a rate
        + [(0, 0, T + 3600, P)]  # the bot's later events go too
    )
    data = events(rows, n_users=5, n_items=400)
    out, report = clean_interactions(data, now=NOW, drop_impressions=False)
    assert report.bot_users.tolist() == [0]
    assert (report.n_bot_users, report.n_bot_events) == (1, 102)
    assert 0 not in set(out.user.tolist())
    assert sorted(set(out.user.tolist())) == [1, 2, 3]


def test_daily_limit_is_a_rolling_24_hours():
    # 50 events spread over 23 hours, and 50 more a day later
    rows = [(0, j, T + j * 1656, V) for j in range(50)] + [(1, j, T + j * 3600, V) for j in range(48)]
    data = events(rows, n_items=60)
    _, report = clean_interactions(data, now=NOW, max_events_per_day=40)
    # user 0: 50 events in 23 h > 40; user 1: 24 per day at most
    assert report.bot_users.tolist() == [0]
    _, relaxed = clean_interactions(data, now=NOW, max_events_per_day=50)
    assert relaxed.n_bot_users == 0


@settings(max_examples=50, deadline=None)
@given(
    times=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40)), max_size=60),
    max_events=st.integers(1, 6),
    window=st.integers(1, 15),
)
def test_burst_users_match_a_sliding_window_count(times, max_events, window):
    user = np.array([u for u, _ in times], dtype=np.int32)
    ts = np.array([t for _, t in times], dtype=np.int64)
    order = user_time_order(user, ts)
    got = burst_users(user[order], ts[order], [(max_events, window)]).tolist()
    # reference: some window [a, a + window) holds more than max_events of the user's events
    want = sorted(
        {u for u, t in times if sum(1 for v, s in times if v == u and t <= s < t + window) > max_events}
    )
    assert got == want


# --------------------------------------------------------------------------- impressions, report


def test_impressions_are_dropped_by_default_and_kept_on_request():
    data = events([(0, 1, T, I), (0, 1, T + 10, V), (1, 2, T, I)])
    out, report = clean_interactions(data, now=NOW)
    assert report.n_impressions == 2 and out.event_type.tolist() == [V]
    kept, report2 = clean_interactions(data, now=NOW, drop_impressions=False)
    assert report2.n_impressions == 0 and len(kept.user) == 3
    interactions, impressions = split_impressions(kept)
    assert interactions.event_type.tolist() == [V]
    assert impressions.item.tolist() == [1, 2]


def test_report_accounts_for_every_event_and_is_plain_json():
    import json

    rows = _burst(0, 120, 30) + [(1, 1, T, V), (1, 1, T, V), (1, 2, 3, V), (1, 3, T, I)]
    data = events(rows, n_items=200)
    out, report = clean_interactions(data, now=NOW)
    assert report.n_input == len(rows)
    assert report.n_input == report.n_output + report.n_removed == len(out.user) + report.n_removed
    d = json.loads(json.dumps(report.as_dict()))
    assert d["removed"] == {"too_early": 1, "in_future": 0, "duplicates": 1, "bot_events": 120, "impressions": 1}


def test_empty_input():
    out, report = clean_interactions(events([]), now=NOW)
    assert len(out.user) == 0 and report.n_output == 0
    assert assign_sessions(out.user, out.timestamp).tolist() == []


# --------------------------------------------------------------------------- weighting


def test_type_weights_come_from_the_dict_over_the_defaults():
    data = events([(0, 1, T, V), (0, 1, T, C), (0, 1, T, I)])
    out = weight_interactions(data, event_weights={"view": 2.5})
    assert out.weight.tolist() == [2.5, 2.0, 0.0]  # click keeps its default, impressions weigh 0
    with pytest.raises(ValueError, match="Unknown event type"):
        weight_interactions(data, event_weights={"wishlist": 1.0})


def test_recency_half_life_halves_the_weight():
    now = T + 30 * 86_400
    data = events([(0, 1, now, V), (0, 1, now - 7 * 86_400, V), (0, 1, now - 14 * 86_400, V), (0, 1, now + 60, V)])
    out = weight_interactions(data, now=now, event_weights={"view": 1.0}, half_life_days=7)
    np.testing.assert_allclose(out.weight, [1.0, 0.5, 0.25, 1.0], rtol=1e-6)
    with pytest.raises(ValueError, match="now="):
        weight_interactions(data, half_life_days=7)


def test_purchase_quantity_scales_with_diminishing_returns():
    data = events([(0, 1, T, P), (0, 2, T, P), (0, 3, T, P), (0, 4, T, P), (0, 5, T, V)], value=[1, 3, np.nan, 0, 9])
    out = weight_interactions(data, event_weights={"purchase": 8.0, "view": 1.0})
    # one unit weighs the purchase weight, three weigh twice as much (log2(1 + 3) = 2);
    # unknown or zero quantities count as one; other types ignore the value
    np.testing.assert_allclose(out.weight, [8.0, 16.0, 8.0, 8.0, 1.0], rtol=1e-6)
    plain = weight_interactions(data, event_weights={"purchase": 8.0}, scale_purchase_value=False)
    assert plain.weight[:4].tolist() == [8.0] * 4


# --------------------------------------------------------------------------- sessions


def test_sessions_split_at_the_gap():
    gap = 1800
    rows = [
        (0, 1, T, V),
        (1, 1, T + 50, V),  # other user: own session
        (0, 2, T + 100, V),  # same session
        (0, 3, T + 100 + gap + 1, V),  # gap exceeded: new session
        (0, 4, T + 100 + gap + 1 + gap, V),  # exactly the gap: same session
    ]
    data = events(rows)
    session = assign_sessions(data.user, data.timestamp, gap_s=gap)
    # sessions are numbered by (user, start): user 0 has 0 and 1, user 1 has 2
    assert session.tolist() == [0, 2, 0, 1, 1]


def test_sessions_do_not_depend_on_input_order():
    rng = np.random.default_rng(0)
    user = rng.integers(0, 5, 200)
    ts = rng.integers(0, 20_000, 200)
    s = assign_sessions(user, ts, gap_s=600)
    p = rng.permutation(200)
    assert assign_sessions(user[p], ts[p], gap_s=600).tolist() == s[p].tolist()
    # every session is one user, and within it no gap exceeds 600 s
    for sid in np.unique(s):
        assert len(np.unique(user[s == sid])) == 1
        t = np.sort(ts[s == sid])
        assert np.all(np.diff(t) <= 600)
    assert math.isclose(s.max() + 1, len(np.unique(s)))
