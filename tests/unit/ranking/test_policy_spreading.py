"""Exposure spreading: the tail's places rotate among tail items, and nothing else changes."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from recommender.ranking.policy import (
    REASON_PINNED,
    REASON_SPREAD,
    PolicyConfig,
    Promotion,
    RequestFilters,
    rerank,
)
from ranking_factories import NOW, make_catalog
from test_policy_properties import World, check_tail_quota, worlds

no_deadline = settings(deadline=None)
ALL = RequestFilters(in_stock_only=False)


@dataclass
class SpreadWorld(World):
    seed: int | None = None

    def run(self, **changes):
        args = {
            "catalog": self.catalog, "policy": self.policy, "request": self.request,
            "bought": self.bought, "scores": self.scores, "k": self.k, "seed": self.seed,
        } | changes
        return rerank(
            self.candidates, args["scores"], args["catalog"], args["policy"], args["k"], NOW,
            request=args["request"], bought=args["bought"], seed=args["seed"],
        )

    def without_spreading(self):
        return self.run(policy=replace(self.policy, exposure_spreading=0.0))


@st.composite
def spread_worlds(draw, **kw) -> SpreadWorld:
    w = draw(worlds(**kw))
    policy = replace(w.policy, exposure_spreading=draw(st.sampled_from([0.25, 0.5, 1.0])))
    seed = draw(st.one_of(st.none(), st.integers(0, 2**62)))
    return SpreadWorld(w.catalog, w.candidates, w.scores, policy, w.request, w.bought, w.k, seed)


def same(a, b) -> bool:
    return (
        a.ids.tolist() == b.ids.tolist()
        and a.reasons == b.reasons
        and a.segments == b.segments
        and np.array_equal(a.scores, b.scores, equal_nan=True)
        and np.array_equal(a.policy_scores, b.policy_scores, equal_nan=True)
    )


# --------------------------------------------------------------------------- properties


@no_deadline
@given(world=spread_worlds())
def test_spreading_zero_is_exactly_todays_output_whatever_the_seed(world):
    off = replace(world.policy, exposure_spreading=0.0)
    today = world.run(policy=off, seed=None)
    assert same(world.run(policy=off), today)
    assert not any(REASON_SPREAD in r for r in today.reasons)


@no_deadline
@given(world=spread_worlds())
def test_same_seed_and_impressions_give_the_same_list(world):
    first = world.run()
    assert same(world.run(), first)
    # the candidates' order does not matter either (noise is keyed on the item, not the row)
    flipped = rerank(
        world.candidates[::-1], world.scores[::-1], world.catalog, world.policy, world.k, NOW,
        request=world.request, bought=world.bought, seed=world.seed,
    )
    if len(set(world.scores[np.isfinite(world.scores)].tolist())) == int(np.isfinite(world.scores).sum()):
        # without tied scores the source's row order cannot break ties differently
        assert flipped.ids.tolist() == first.ids.tolist()


@no_deadline
@given(world=spread_worlds())
def test_output_stays_eligible_unique_with_pins_first(world):
    result = world.run()
    ids = result.ids.tolist()
    assert len(ids) == len(set(ids))
    assert all(world.eligible(i) for i in ids)
    supply = set(world.candidate_best_scores()) | set(world.eligible_pins())
    assert len(ids) == min(world.k, len(supply))
    pins = world.eligible_pins()
    assert ids[: len(pins)] == pins
    assert not any(REASON_PINNED in r for r in result.reasons[len(pins):])


@no_deadline
@given(world=spread_worlds())
def test_tail_quota_holds_with_spreading(world):
    check_tail_quota(world)


@no_deadline
@given(
    world=spread_worlds(
        rules=False,
        share=st.sampled_from([0.2, 1 / 3, 0.5, 0.7, 1.0]),
        diversity=st.sampled_from([0.0, 0.3, 1.0]),
        exploration=st.sets(st.integers(0, 12), max_size=3).map(tuple),
    )
)
def test_tail_quota_holds_with_spreading_diversity_and_exploration(world):
    check_tail_quota(world)


@no_deadline
@given(world=spread_worlds(diversity=0.0, exploration=()))
def test_spreading_only_changes_which_unpromoted_tail_item_fills_a_tail_place(world):
    """Without MMR and exploration: same segments per position; head, pinned and promoted items stay put."""
    got, before = world.run(), world.without_spreading()
    assert got.segments == before.segments
    # each place keeps its policy score; only who holds it may change
    np.testing.assert_array_equal(got.policy_scores, before.policy_scores)
    active = world.policy.promotion_boost(
        np.arange(world.catalog.n_items), world.catalog.category, NOW
    )
    for pos, (a, b) in enumerate(zip(got.ids.tolist(), before.ids.tolist())):
        fixed = world.catalog.is_head[b] or active[b] != 0 or REASON_PINNED in before.reasons[pos]
        if fixed:
            assert a == b, (pos, got.ids.tolist(), before.ids.tolist())
        # the reason is given exactly where spreading put another item
        assert (REASON_SPREAD in got.reasons[pos]) == (a != b)


@settings(max_examples=200, deadline=None)
@given(world=spread_worlds(diversity=0.0, exploration=()), boosts=st.tuples(
    st.sampled_from([0.0, 0.5, 1.0, 4.0]), st.sampled_from([0.0, 0.5, 1.0, 4.0])).map(sorted))
def test_higher_tail_boost_still_never_lowers_tail_count_in_any_prefix(world, boosts):
    low = world.run(policy=replace(world.policy, tail_boost=boosts[0]))
    high = world.run(policy=replace(world.policy, tail_boost=boosts[1]))
    t_low = np.cumsum([s == "tail" for s in low.segments])
    t_high = np.cumsum([s == "tail" for s in high.segments])
    n_pins = len(world.eligible_pins())
    assert all(h >= lo for h, lo in list(zip(t_high, t_low))[n_pins:])


@no_deadline
@given(world=spread_worlds(), scale=st.sampled_from([0.25, 4.0, 1024.0]))
def test_spreading_does_not_depend_on_the_score_scale(world, scale):
    a, b = world.run(), world.run(scores=world.scores * scale)
    assert a.ids.tolist() == b.ids.tolist()


# --------------------------------------------------------------------------- behaviour


def _tail_world(n_tail=20, n_head=10):
    """n_head head items scored above n_tail tail items of (nearly) equal score."""
    n = n_head + n_tail
    head = np.zeros(n, bool)
    head[:n_head] = True
    scores = np.concatenate([np.linspace(5, 4, n_head), np.full(n_tail, 1.0)])
    return n, head, scores


def test_noise_spreads_equal_tail_items_across_requests():
    n, head, scores = _tail_world()
    catalog = make_catalog(n, is_head=head, ever_shown=np.ones(n, bool))
    policy = PolicyConfig(min_tail_share=0.5, exposure_spreading=0.5)
    seen = Counter()
    for seed in range(200):
        r = rerank(np.arange(n), scores, catalog, policy, 6, NOW, request=ALL, seed=seed)
        seen.update(i for i in r.ids.tolist() if not head[i])
        assert sum(1 for i in r.ids.tolist() if not head[i]) == 3
    # Without spreading the same 3 tail items (the first by source order) fill every list.
    off = rerank(np.arange(n), scores, catalog, replace(policy, exposure_spreading=0.0), 6, NOW,
                 request=ALL, seed=1)
    assert sorted(i for i in off.ids.tolist() if not head[i]) == [10, 11, 12]
    assert len(seen) == 20, "every equal tail item gets a turn"
    assert max(seen.values()) < 3 * 600 / 20, seen


def test_noise_respects_score_gaps():
    """A tail item 4 standard deviations ahead keeps its place in almost every request."""
    n = 12
    head = np.zeros(n, bool)
    scores = np.concatenate([[10.0], np.zeros(n - 1)])  # z of item 0 is about 3.3
    catalog = make_catalog(n, is_head=head)
    policy = PolicyConfig(exposure_spreading=0.25)
    first = Counter(
        int(rerank(np.arange(n), scores, catalog, policy, 3, NOW, request=ALL, seed=s).ids[0])
        for s in range(300)
    )
    assert first[0] >= 295, first


def test_items_shown_often_today_give_way_to_close_ones_shown_less():
    n, head, scores = _tail_world(n_tail=4, n_head=2)
    scores = np.array([5.0, 4.9, 1.2, 1.1, 1.0, 0.9])  # tail items 2..5 close together
    shown = np.array([0, 0, 500, 0, 3, 0])
    catalog = make_catalog(n, is_head=head, impressions_today=shown)
    policy = PolicyConfig(min_tail_share=0.5, exposure_spreading=1.0)
    got = rerank(np.arange(n), scores, catalog, policy, 4, NOW, request=ALL)
    off = rerank(np.arange(n), scores, catalog, replace(policy, exposure_spreading=0.0), 4, NOW, request=ALL)
    assert off.ids.tolist() == [0, 2, 1, 3]
    assert got.ids.tolist() == [0, 3, 1, 5], "the much-shown item 2 and the shown item 4 give way"
    assert REASON_SPREAD in got.reasons[1] and REASON_SPREAD in got.reasons[3]
    assert REASON_SPREAD not in got.reasons[0] and REASON_SPREAD not in got.reasons[2]
    # head items are never penalised, however often shown
    catalog_head_shown = make_catalog(n, is_head=head, impressions_today=np.array([900, 0, 0, 0, 0, 0]))
    assert rerank(np.arange(n), scores, catalog_head_shown, policy, 4, NOW, request=ALL).ids[0] == 0


def test_a_promoted_tail_item_is_not_rotated_away():
    n, head, scores = _tail_world(n_tail=6, n_head=2)
    shown = np.zeros(n, int)
    shown[2] = 1000
    catalog = make_catalog(n, is_head=head, impressions_today=shown)
    policy = PolicyConfig(
        min_tail_share=0.5, exposure_spreading=1.0, promotions=(Promotion(boost=0.5, item=2),)
    )
    for seed in range(20):
        r = rerank(np.arange(n), scores, catalog, policy, 4, NOW, request=ALL, seed=seed)
        assert r.ids[1] == 2, "the first tail place stays the promoted item's"


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_spreading_outside_zero_to_one_is_rejected_with_a_clear_message(bad):
    with pytest.raises(ValueError, match=r"exposure_spreading must be in \[0, 1\]"):
        PolicyConfig(exposure_spreading=bad)
