"""The exposure policy, one rule at a time, on hand-made catalogs."""
from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from recommender.ranking.policy import (
    REASON_DEMOTED,
    REASON_DIVERSITY,
    REASON_EXPLORATION,
    REASON_LONG_TAIL,
    REASON_PINNED,
    REASON_PROMOTED,
    REASON_TAIL_QUOTA,
    CatalogArrays,
    PolicyConfig,
    Promotion,
    RequestFilters,
    rerank,
)
from ranking_factories import NOW, make_catalog

ALL = RequestFilters(in_stock_only=False)
NO_RULES = PolicyConfig()


def ranked(catalog, policy=NO_RULES, k=10, *, scores=None, candidates=None, now=NOW, **kw):
    """Rerank every item of the catalog; by default item i scores n - i (so 0 is best)."""
    n = catalog.n_items
    candidates = np.arange(n) if candidates is None else np.asarray(candidates)
    scores = (n - np.arange(len(candidates))).astype(float) if scores is None else scores
    return rerank(candidates, np.asarray(scores, float), catalog, policy, k, now, **kw)


# --- identity and bookkeeping -------------------------------------------------------------


def test_no_rules_keeps_score_order_and_cuts_at_k():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    result = ranked(make_catalog(5), k=3, scores=scores)
    assert result.ids.tolist() == [1, 3, 2]
    assert result.scores.tolist() == [0.9, 0.7, 0.5]


def test_ties_keep_the_candidate_order():
    result = ranked(make_catalog(4), candidates=[2, 0, 3, 1], scores=[1.0, 1.0, 1.0, 1.0])
    assert result.ids.tolist() == [2, 0, 3, 1]


def test_padding_from_topk_is_ignored():
    # ml.base.topk pads with id -1 and score -inf
    result = ranked(make_catalog(3), candidates=[1, -1, 0], scores=[2.0, -np.inf, 1.0])
    assert result.ids.tolist() == [1, 0]


def test_duplicate_candidates_keep_their_best_row_and_its_reasons():
    result = ranked(
        make_catalog(3),
        candidates=[0, 1, 0],
        scores=[1.0, 2.0, 3.0],
        candidate_reasons=[["popular"], ["similar to an item you bought"], ["bought together"]],
    )
    assert result.ids.tolist() == [0, 1]
    assert result.reasons == [["bought together"], ["similar to an item you bought"]]


def test_k_zero_and_no_candidates_give_empty_lists():
    assert len(ranked(make_catalog(3), k=0)) == 0
    assert len(ranked(make_catalog(3), candidates=[], scores=[])) == 0


def test_segments_follow_the_catalog():
    catalog = make_catalog(3, is_head=np.array([True, False, True]))
    assert ranked(catalog).segments == ["head", "tail", "head"]


# --- hard filters -------------------------------------------------------------------------


def test_request_filters_category_price_stock_and_excluded_ids():
    catalog = make_catalog(
        6,
        category=np.array([1, 1, 2, 1, 1, 1]),
        price=np.array([10.0, 50.0, 10.0, np.nan, 10.0, 20.0]),
        in_stock=np.array([True, True, True, True, False, True]),
    )
    request = RequestFilters(categories=(1,), min_price=10.0, max_price=20.0, exclude_ids=[5])
    # 1: too dear, 2: wrong category, 3: unknown price, 4: out of stock, 5: excluded
    assert ranked(catalog, request=request).ids.tolist() == [0]


def test_price_bounds_are_inclusive():
    catalog = make_catalog(3, price=np.array([5.0, 7.5, 10.0]))
    result = ranked(catalog, request=RequestFilters(min_price=5.0, max_price=10.0))
    assert sorted(result.ids.tolist()) == [0, 1, 2]


def test_out_of_stock_items_stay_when_the_request_allows_them():
    catalog = make_catalog(2, in_stock=np.array([False, True]))
    assert ranked(catalog, request=ALL).ids.tolist() == [0, 1]
    assert ranked(catalog).ids.tolist() == [1]


def test_inactive_items_are_dropped():
    catalog = make_catalog(3, is_active=np.array([True, False, True]))
    assert ranked(catalog).ids.tolist() == [0, 2]


def test_already_bought_items_are_excluded():
    assert ranked(make_catalog(4), bought=np.array([0, 2])).ids.tolist() == [1, 3]


def test_buried_items_are_absent_even_when_pinned():
    policy = PolicyConfig(buried=(0, 2), pinned=(2,))
    assert ranked(make_catalog(4), policy).ids.tolist() == [1, 3]


def test_daily_impression_cap_removes_items_at_or_over_it():
    catalog = make_catalog(4, impressions_today=np.array([9, 10, 11, 0]))
    assert ranked(catalog, PolicyConfig(daily_impression_cap=10)).ids.tolist() == [0, 3]


def test_per_item_cap_overrides_the_daily_cap():
    catalog = make_catalog(3, impressions_today=np.array([5, 5, 0]))
    policy = PolicyConfig(daily_impression_cap=10, item_impression_caps={1: 5, 2: 0})
    # item 1 reached its own cap of 5; a cap of 0 hides item 2 entirely
    assert ranked(catalog, policy).ids.tolist() == [0]


# --- pins ---------------------------------------------------------------------------------


def test_pinned_items_come_first_in_pin_order():
    policy = PolicyConfig(pinned=(3, 1, 3))
    result = ranked(make_catalog(5), policy)
    assert result.ids.tolist() == [3, 1, 0, 2, 4]
    assert result.reasons[:2] == [[REASON_PINNED], [REASON_PINNED]]


def test_ineligible_pins_are_skipped():
    catalog = make_catalog(4, in_stock=np.array([True, True, False, True]))
    result = ranked(catalog, PolicyConfig(pinned=(2, 3)))
    assert result.ids.tolist() == [3, 0, 1]


def test_a_pin_need_not_be_a_candidate():
    result = ranked(make_catalog(5), PolicyConfig(pinned=(4,)), candidates=[0, 1], scores=[2, 1])
    assert result.ids.tolist() == [4, 0, 1]
    assert math.isnan(result.scores[0]) and math.isnan(result.policy_scores[0])


def test_more_pins_than_k_are_cut_at_k():
    assert ranked(make_catalog(5), PolicyConfig(pinned=(4, 3, 2)), k=2).ids.tolist() == [4, 3]


# --- promotions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "now, boosted",
    [
        (NOW - timedelta(seconds=1), False),  # before the start
        (NOW, True),  # the start is inclusive
        (NOW + timedelta(hours=2) - timedelta(seconds=1), True),
        (NOW + timedelta(hours=2), False),  # the end is exclusive
    ],
)
def test_promotion_applies_only_inside_its_window(now, boosted):
    promo = Promotion(boost=5.0, item=3, start=NOW, end=NOW + timedelta(hours=2))
    result = ranked(make_catalog(4), PolicyConfig(promotions=(promo,)), now=now)
    assert bool(result.ids[0] == 3) is boosted
    assert (REASON_PROMOTED in result.reasons[result.ids.tolist().index(3)]) is boosted


def test_category_promotion_and_open_windows():
    catalog = make_catalog(4, category=np.array([0, 0, 1, 1]))
    promo = Promotion(boost=10.0, category=1, start=NOW - timedelta(days=1))  # no end
    assert ranked(catalog, PolicyConfig(promotions=(promo,))).ids.tolist() == [2, 3, 0, 1]


def test_negative_boost_demotes():
    result = ranked(make_catalog(3), PolicyConfig(promotions=(Promotion(boost=-10.0, item=0),)))
    assert result.ids.tolist() == [1, 2, 0]
    assert REASON_DEMOTED in result.reasons[2]


def test_boosts_are_in_standard_deviations_of_the_scores():
    # scores 3, 2, 1, 0 have std ~1.118: a 1.0 boost lifts item 1 past item 0 (1 score
    # unit = 0.894 std behind) but not item 2 past item 0 (2 units = 1.79 std behind).
    catalog = make_catalog(4)
    for scale in (1.0, 1000.0):
        scores = np.array([3.0, 2.0, 1.0, 0.0]) * scale
        promos = (Promotion(boost=1.0, item=1), Promotion(boost=1.0, item=2))
        assert ranked(catalog, PolicyConfig(promotions=promos), scores=scores).ids.tolist() == [
            1,
            0,
            2,
            3,
        ]


# --- long tail ----------------------------------------------------------------------------


def test_tail_boost_lifts_tail_items_and_says_so():
    catalog = make_catalog(4, is_head=np.array([True, True, False, False]))
    result = ranked(catalog, PolicyConfig(tail_boost=3.0))
    assert result.ids.tolist() == [2, 3, 0, 1]
    assert result.reasons[0] == [REASON_LONG_TAIL]
    assert result.segments == ["tail", "tail", "head", "head"]


def test_tail_quota_in_every_prefix():
    # given 6 head items that outscore 4 tail items
    catalog = make_catalog(10, is_head=np.arange(10) < 6)
    # when a third of every prefix must be tail
    result = ranked(catalog, PolicyConfig(min_tail_share=1 / 3), k=9)
    # then positions 3, 6, 9 (prefix lengths 3, 6, 9) are the first tail items
    assert result.ids.tolist() == [0, 1, 6, 2, 3, 7, 4, 5, 8]
    assert REASON_TAIL_QUOTA in result.reasons[2]


def test_tail_quota_when_the_tail_runs_out_fills_with_head():
    catalog = make_catalog(6, is_head=np.array([True, True, True, True, False, True]))
    result = ranked(catalog, PolicyConfig(min_tail_share=0.5), k=5)
    # the only tail item fills the first prefix that needs one (length 2); after that the
    # quota cannot be met and the list is filled with head items, not shortened
    assert result.ids.tolist() == [0, 4, 1, 2, 3]


def test_head_pins_leave_a_deficit_made_up_right_after():
    catalog = make_catalog(6, is_head=np.array([True, True, True, True, False, False]))
    result = ranked(catalog, PolicyConfig(min_tail_share=0.5, pinned=(2, 3)), k=6)
    assert result.ids.tolist() == [2, 3, 4, 5, 0, 1]


def test_tail_pins_count_towards_the_quota():
    # given head items 0, 1 that outscore tail items 2, 3, and tail item 3 pinned
    catalog = make_catalog(4, is_head=np.array([True, True, False, False]))
    result = ranked(catalog, PolicyConfig(min_tail_share=0.5, pinned=(3,)), k=4)
    # then the pin already covers prefixes 2 and 3; prefix 4 needs a second tail item
    assert result.ids.tolist() == [3, 0, 1, 2]


# --- exploration --------------------------------------------------------------------------


def test_exploration_slots_take_the_best_never_shown_items():
    catalog = make_catalog(6, ever_shown=np.array([True, True, True, True, False, False]))
    result = ranked(catalog, PolicyConfig(exploration_positions=(1, 3, 20)), k=5)
    assert result.ids.tolist() == [0, 4, 1, 5, 2]
    assert result.reasons[1] == [REASON_EXPLORATION]
    assert result.reasons[3] == [REASON_EXPLORATION]


def test_exploration_slot_without_never_shown_items_is_filled_normally():
    result = ranked(make_catalog(3), PolicyConfig(exploration_positions=(0,)))
    assert result.ids.tolist() == [0, 1, 2]
    assert result.reasons == [[], [], []]


# --- diversity ----------------------------------------------------------------------------


def _near_duplicates() -> CatalogArrays:
    # 1 is a near copy of 0 (cosine 0.995), 2 is related to 0 (0.71), 3 is unrelated (0).
    vectors = np.array(
        [[1.0, 0.0, 0.0], [0.99, 0.1, 0.0], [0.7, 0.7, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32
    )
    return make_catalog(4, vectors=vectors)


SCORES = np.array([1.0, 0.95, 0.9, 0.0])


def test_mmr_pushes_a_near_duplicate_down():
    assert ranked(_near_duplicates(), scores=SCORES).ids.tolist() == [0, 1, 2, 3]
    result = ranked(_near_duplicates(), PolicyConfig(diversity=0.5), scores=SCORES)
    assert result.ids.tolist()[:2] == [0, 2]
    assert REASON_DIVERSITY in result.reasons[1]
    assert REASON_DIVERSITY not in result.reasons[0]


def test_full_diversity_picks_the_least_similar_next():
    result = ranked(_near_duplicates(), PolicyConfig(diversity=1.0), scores=SCORES)
    assert result.ids.tolist() == [0, 3, 2, 1]


def test_diversity_counts_pins_as_already_placed():
    result = ranked(_near_duplicates(), PolicyConfig(diversity=0.5, pinned=(0,)), scores=SCORES)
    assert result.ids.tolist()[:2] == [0, 2]


def test_diversity_without_vectors_is_off():
    result = ranked(make_catalog(3), PolicyConfig(diversity=0.9))
    assert result.ids.tolist() == [0, 1, 2]


# --- errors a caller can make -------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_tail_share": 1.5}, "min_tail_share"),
        ({"diversity": -0.1}, "diversity"),
        ({"tail_boost": math.inf}, "tail_boost"),
        ({"exploration_positions": (-1,)}, "0-based"),
        ({"daily_impression_cap": -1}, "caps"),
    ],
)
def test_bad_policy_values_are_rejected_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PolicyConfig(**kwargs)


def test_bad_promotions_are_rejected():
    with pytest.raises(ValueError, match="exactly one"):
        Promotion(boost=1.0, item=1, category=2)
    with pytest.raises(ValueError, match="exactly one"):
        Promotion(boost=1.0)
    with pytest.raises(ValueError, match="before"):
        Promotion(boost=1.0, item=1, start=NOW, end=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        Promotion(boost=1.0, item=1, start=NOW.replace(tzinfo=None))


def test_bad_requests_and_arguments_are_rejected():
    with pytest.raises(ValueError, match="swap"):
        RequestFilters(min_price=10.0, max_price=1.0)
    with pytest.raises(ValueError, match="timezone-aware"):
        ranked(make_catalog(2), now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="outside the catalog"):
        ranked(make_catalog(2), candidates=[0, 5], scores=[1.0, 0.0])
    with pytest.raises(ValueError, match="outside the catalog"):
        ranked(make_catalog(2), PolicyConfig(pinned=(7,)))
    with pytest.raises(ValueError, match="one length"):
        ranked(make_catalog(2), candidates=[0, 1], scores=[1.0])
    with pytest.raises(ValueError, match="shape"):
        make_catalog(3, price=np.ones(4))


def test_large_category_codes_work_for_filters_and_promotions():
    # codes past the dense lookup table take the binary-search path
    catalog = make_catalog(4, category=np.array([70_000, 3, 70_000, -1]))
    promo = Promotion(boost=10.0, category=70_000)
    request = RequestFilters(categories=(70_000, -1))
    result = ranked(catalog, PolicyConfig(promotions=(promo,)), request=request)
    assert result.ids.tolist() == [0, 2, 3]
    assert REASON_PROMOTED in result.reasons[1] and REASON_PROMOTED not in result.reasons[2]
