"""Behaviour analysis for the admin (recommender.ml.analysis)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest

from recommender.ml.analysis import (
    active_users,
    behaviour_summary,
    event_type_counts,
    funnel,
    gini,
    popularity_curve,
    repeat_purchases,
)
from recommender.ml.base import EVENT_CODES, Interactions

DAY = 86_400
NOW = datetime(2024, 1, 31, 12, 0, tzinfo=timezone.utc)
MON = int(datetime(2024, 1, 1, 10, 0, tzinfo=timezone.utc).timestamp())  # a Monday, 10:00 UTC
V, S, C, A, P, I = (EVENT_CODES[k] for k in ("view", "search", "click", "add_to_cart", "purchase", "impression"))


def events(rows, n_users: int = 10, n_items: int = 10) -> Interactions:
    """Interactions from ``(user, item, timestamp, event_type)`` rows."""
    u, i, t, e = (np.array(col) for col in zip(*rows))
    return Interactions(
        user=u.astype(np.int32),
        item=i.astype(np.int32),
        timestamp=t.astype(np.int64),
        event_type=e.astype(np.int8),
        n_users=n_users,
        n_items=n_items,
    )


def test_counts_by_event_type_list_every_type():
    data = events([(0, 0, MON, V), (0, 0, MON, V), (1, 2, MON, P), (1, 2, MON, I)])
    assert event_type_counts(data) == {
        "view": 2, "search": 0, "click": 0, "add_to_cart": 0, "purchase": 1, "rating": 0, "impression": 1,
    }


def test_funnel_counts_users_and_pairs_reaching_each_stage():
    # given: u0 goes all the way on item 0 and views item 1; u1 views and clicks;
    # u2 only views; u3 buys from an e-mail link without a logged view; u4 only searches
    data = events(
        [
            (0, 0, MON, V), (0, 0, MON + 1, C), (0, 0, MON + 2, A), (0, 0, MON + 3, P), (0, 1, MON, V),
            (1, 2, MON, V), (1, 2, MON + 5, C),
            (2, 3, MON, V),
            (3, 4, MON, P),
            (4, 5, MON, S),
        ]
    )
    # when the funnel is computed
    f = funnel(data)
    stages = {row["stage"]: row for row in f["stages"]}
    # then a stage is reached by having it or any later stage
    assert [stages[s]["users"] for s in ("view", "click", "add_to_cart", "purchase")] == [4, 3, 2, 2]
    assert [stages[s]["users_with_event"] for s in ("view", "click", "add_to_cart", "purchase")] == [3, 2, 1, 2]
    assert [stages[s]["pairs"] for s in ("view", "click", "add_to_cart", "purchase")] == [5, 3, 2, 2]
    assert [stages[s]["pairs_with_event"] for s in ("view", "click", "add_to_cart", "purchase")] == [4, 2, 1, 2]
    assert stages["view"]["user_conversion"] is None
    assert stages["click"]["user_conversion"] == pytest.approx(3 / 4)
    assert stages["add_to_cart"]["user_conversion"] == pytest.approx(2 / 3)
    assert stages["purchase"]["user_conversion"] == pytest.approx(1.0)
    assert stages["click"]["pair_conversion"] == pytest.approx(3 / 5)
    assert f["user_conversion_overall"] == pytest.approx(2 / 4)
    assert f["pair_conversion_overall"] == pytest.approx(2 / 5)


def test_funnel_rejects_unknown_stage():
    with pytest.raises(ValueError, match="wishlist"):
        funnel(events([(0, 0, MON, V)]), stages=("view", "wishlist"))


def test_daily_and_weekly_active_users_fill_gaps_and_start_weeks_on_monday():
    sunday = MON - DAY
    data = events(
        [
            (0, 0, sunday, V),
            (0, 1, MON, V), (1, 1, MON + 3600, V), (1, 2, MON + 7200, V),  # two users on Monday
            (2, 1, MON + 2 * DAY, V),  # Wednesday; Tuesday has nobody
            (3, 1, MON + DAY, I),  # impressions alone are not activity
        ]
    )
    daily = active_users(data, "day")
    assert daily["start"] == ["2023-12-31", "2024-01-01", "2024-01-02", "2024-01-03"]
    assert daily["active_users"] == [1, 2, 0, 1]
    weekly = active_users(data, "week")
    assert weekly["start"] == ["2023-12-25", "2024-01-01"]
    assert weekly["active_users"] == [1, 3]
    assert active_users(data, "day", include_impressions=True)["active_users"] == [1, 2, 1, 1]
    with pytest.raises(ValueError, match="'day' or 'week'"):
        active_users(data, "month")


@pytest.mark.parametrize(
    ("counts", "expected"),
    [([0, 0, 0, 1], 0.75), ([5, 5, 5, 5], 0.0), ([1, 2, 3, 4], 0.25), ([4, 1, 3, 2], 0.25)],
)
def test_gini_of_known_distributions(counts, expected):
    assert gini(np.array(counts)) == pytest.approx(expected)


def test_gini_without_interactions_is_nan():
    assert np.isnan(gini(np.zeros(3)))


def test_popularity_curve_cuts_the_head_and_measures_its_share():
    # given 10 items with 10, 9, ..., 1 interactions inside the window ...
    rows = [(0, item, int(NOW.timestamp()) - 3600, V) for item in range(10) for _ in range(10 - item)]
    # ... plus interactions that must not count: too old, in the future, impressions
    rows += [(1, 9, int(NOW.timestamp()) - 40 * DAY, V)] * 50
    rows += [(1, 9, int(NOW.timestamp()) + 3600, V)] * 50
    rows += [(1, 9, int(NOW.timestamp()) - 3600, I)] * 50
    data = events(rows, n_items=12)  # items 10 and 11 never seen
    # when the head is 25% of the catalog over the last 30 days
    pc = popularity_curve(data, now=NOW, window_days=30, head_fraction=0.25, max_points=None)
    # then floor(0.25 * 12) = 3 items are head and they hold 10 + 9 + 8 of 55 interactions
    assert pc["cut"] == 3
    assert pc["n_interactions"] == 55
    assert pc["head_share"] == pytest.approx(27 / 55)
    assert pc["items_with_interactions"] == 10
    assert pc["gini"] == pytest.approx(gini(np.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0])))
    assert [t["item"] for t in pc["top_items"][:3]] == [0, 1, 2]
    curve = pc["curve"]
    assert curve["rank"] == list(range(1, 13))
    assert curve["interaction_share"][2] == pytest.approx(27 / 55)
    assert curve["interaction_share"][-1] == pytest.approx(1.0)
    assert curve["item_share"][-1] == pytest.approx(1.0)


def test_popularity_curve_is_sampled_for_big_catalogs():
    data = events([(0, j % 1000, int(NOW.timestamp()) - 60, V) for j in range(3000)], n_items=1000)
    pc = popularity_curve(data, now=NOW, max_points=50)
    assert len(pc["curve"]["rank"]) <= 50
    assert pc["curve"]["rank"][0] == 1 and pc["curve"]["rank"][-1] == 1000
    # equal counts: the head rule puts ties in the tail, so no head at all
    assert pc["cut"] == 0 and pc["gini"] == pytest.approx(0.0)


def test_repeat_purchase_rates():
    d1, d2, d3 = MON, MON + DAY, MON + 2 * DAY
    data = events(
        [
            (0, 0, d1, P), (0, 0, d3, P),  # u0 buys item 0 again two days later: repeat user and pair
            (1, 1, d1, P), (1, 1, d1 + 60, P), (1, 2, d2, P),  # u1: same item twice in a day, other item later
            (2, 3, d1, P), (2, 3, d2, V),  # u2 buys once (a later view is not a purchase)
            (3, 4, d1, V),  # u3 never buys
        ]
    )
    r = repeat_purchases(data)
    assert (r["purchasing_users"], r["repeat_users"]) == (3, 2)
    assert r["repeat_user_rate"] == pytest.approx(2 / 3)
    assert (r["purchased_pairs"], r["repeat_pairs"]) == (4, 1)
    assert r["repeat_pair_rate"] == pytest.approx(1 / 4)


def test_repeat_purchases_without_purchases_has_no_rate():
    r = repeat_purchases(events([(0, 0, MON, V)]))
    assert r["purchasing_users"] == 0 and r["repeat_user_rate"] is None


def test_summary_is_plain_json():
    rng = np.random.default_rng(0)
    n = 500
    rows = list(
        zip(
            rng.integers(0, 30, n),
            rng.integers(0, 40, n),
            int(NOW.timestamp()) - rng.integers(0, 20 * DAY, n),
            rng.choice([V, C, A, P, I], n),
        )
    )
    data = events(rows, n_users=30, n_items=40)
    summary = behaviour_summary(data, now=NOW)
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary
    assert sum(summary["event_types"].values()) == n
