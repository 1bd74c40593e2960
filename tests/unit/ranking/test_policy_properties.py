"""Properties of the exposure policy on small random worlds (hypothesis)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from recommender.ranking.policy import (
    REASON_EXPLORATION,
    REASON_PINNED,
    CatalogArrays,
    PolicyConfig,
    Promotion,
    RequestFilters,
    rerank,
)
from ranking_factories import NOW, reference_eligible


#: These check correctness, not speed; a shared 2-core machine can pause any one example.
no_deadline = settings(deadline=None)


@dataclass
class World:
    catalog: CatalogArrays
    candidates: np.ndarray
    scores: np.ndarray
    policy: PolicyConfig
    request: RequestFilters
    bought: np.ndarray
    k: int

    def run(self, **changes) -> "object":
        args = {
            "catalog": self.catalog,
            "policy": self.policy,
            "request": self.request,
            "bought": self.bought,
            "scores": self.scores,
            "k": self.k,
        } | changes
        return rerank(
            self.candidates,
            args["scores"],
            args["catalog"],
            args["policy"],
            args["k"],
            NOW,
            request=args["request"],
            bought=args["bought"],
        )

    def eligible(self, item: int) -> bool:
        return reference_eligible(item, self.catalog, self.policy, self.request, self.bought)

    def candidate_best_scores(self) -> dict[int, float]:
        """Valid, eligible candidates and their best score."""
        best: dict[int, float] = {}
        for item, score in zip(self.candidates.tolist(), self.scores.tolist()):
            if item >= 0 and math.isfinite(score) and self.eligible(item):
                best[item] = max(score, best.get(item, -math.inf))
        return best

    def eligible_pins(self) -> list[int]:
        return [p for p in dict.fromkeys(self.policy.pinned) if self.eligible(p)][: self.k]


def windows(now):
    hours = st.integers(-48, 48).map(lambda h: now + timedelta(hours=h))
    return st.tuples(st.one_of(st.none(), hours), st.one_of(st.none(), hours)).filter(
        lambda w: w[0] is None or w[1] is None or w[0] < w[1]
    )


@st.composite
def worlds(draw, *, rules: bool = True, share=None, diversity=None, exploration=None) -> World:
    n = draw(st.integers(1, 25))
    bools = hnp.arrays(bool, n)
    catalog = CatalogArrays(
        is_head=draw(bools),
        category=draw(hnp.arrays(np.int64, n, elements=st.integers(0, 3))),
        price=draw(hnp.arrays(np.float64, n, elements=st.sampled_from([np.nan, 1.0, 5.0, 20.0]))),
        in_stock=draw(bools),
        impressions_today=draw(hnp.arrays(np.int64, n, elements=st.integers(0, 4))),
        ever_shown=draw(bools),
        vectors=draw(
            st.one_of(
                st.none(),
                hnp.arrays(np.float32, (n, 3), elements=st.sampled_from([-1.0, 0.0, 0.5, 1.0])),
            )
        ),
        is_active=draw(st.one_of(st.none(), bools)) if rules else None,
    )
    m = draw(st.integers(0, 30))
    candidates = draw(hnp.arrays(np.int64, m, elements=st.integers(-1, n - 1)))
    # Few distinct values, so ties (the hard case for determinism) are common.
    scores = draw(
        hnp.arrays(
            np.float64,
            m,
            elements=st.one_of(
                st.sampled_from([-2.0, 0.0, 1.0, 3.0, -np.inf]), st.floats(-5, 5, width=32)
            ),
        )
    )
    items = st.integers(0, n - 1)
    if rules:
        promotions = []
        for start, end in draw(st.lists(windows(NOW), max_size=3)):
            target = draw(st.sampled_from(["item", "category"]))
            promotions.append(
                Promotion(
                    boost=draw(st.sampled_from([-1.0, 0.5, 2.0])),
                    item=draw(items) if target == "item" else None,
                    category=draw(st.integers(0, 3)) if target == "category" else None,
                    start=start,
                    end=end,
                )
            )
        policy = PolicyConfig(
            tail_boost=draw(st.sampled_from([0.0, 0.5, 1.0, 4.0])),
            min_tail_share=draw(st.sampled_from([0.0, 0.2, 0.25, 1 / 3, 0.5, 0.7, 1.0]))
            if share is None
            else share,
            diversity=draw(st.sampled_from([0.0, 0.3, 1.0])) if diversity is None else diversity,
            exploration_positions=tuple(draw(st.sets(st.integers(0, 12), max_size=3)))
            if exploration is None
            else exploration,
            promotions=tuple(promotions),
            pinned=tuple(draw(st.lists(items, max_size=4))),
            buried=tuple(draw(st.lists(items, max_size=3))),
            daily_impression_cap=draw(st.one_of(st.none(), st.integers(0, 5))),
            item_impression_caps=draw(st.dictionaries(items, st.integers(0, 5), max_size=3)),
        )
        request = RequestFilters(
            categories=draw(
                st.one_of(st.none(), st.sets(st.integers(0, 3), min_size=1).map(tuple))
            ),
            min_price=draw(st.sampled_from([None, 1.0, 5.0])),
            max_price=draw(st.sampled_from([None, 20.0, 100.0])),
            exclude_ids=draw(st.lists(items, max_size=3)),
            in_stock_only=draw(st.booleans()),
        )
        bought = np.asarray(draw(st.lists(items, max_size=3)), dtype=np.int64)
    else:
        # No filters or merchandiser rules; share / diversity / exploration as given
        # (a value or a strategy), else off.
        def value(x, off):
            return off if x is None else draw(x) if isinstance(x, st.SearchStrategy) else x

        policy = PolicyConfig(
            min_tail_share=value(share, 0.0),
            diversity=value(diversity, 0.0),
            exploration_positions=value(exploration, ()),
        )
        request = RequestFilters(in_stock_only=False)
        bought = np.zeros(0, dtype=np.int64)
    return World(catalog, candidates, scores, policy, request, bought, draw(st.integers(0, 15)))


def tail_prefix_counts(world: World, ids: np.ndarray) -> np.ndarray:
    """t[p] = tail items among the first p (t[0] = 0)."""
    return np.concatenate([[0], np.cumsum(~world.catalog.is_head[ids])])


def reference_policy_scores(world: World) -> dict[int, float]:
    """z-score + tail boost + active promotions, for every eligible candidate."""
    best = world.candidate_best_scores()
    if not best:
        return {}
    values = np.array(list(best.values()))
    std = values.std()
    out = {}
    for item, score in best.items():
        z = (score - values.mean()) / (std if std > 0 else 1.0)
        tail = not world.catalog.is_head[item]
        category = int(world.catalog.category[item])
        promo = sum(
            p.boost
            for p in world.policy.promotions
            if p.is_active(NOW) and (p.item == item or (p.item is None and p.category == category))
        )
        out[item] = z + world.policy.tail_boost * tail + promo
    return out


@no_deadline
@given(world=worlds())
def test_output_is_eligible_unique_and_as_long_as_supply_allows(world):
    result = world.run()
    ids = result.ids.tolist()
    # no duplicates
    assert len(ids) == len(set(ids))
    # only eligible items: filters, bought, buried, caps, request exclusions all respected
    assert all(world.eligible(i) for i in ids)
    # as long as k or the eligible supply allows
    supply = set(world.candidate_best_scores()) | set(world.eligible_pins())
    assert len(ids) == min(world.k, len(supply))
    # segments and scores line up with the ids
    assert result.segments == ["head" if world.catalog.is_head[i] else "tail" for i in ids]
    assert len(result.scores) == len(result.policy_scores) == len(result.reasons) == len(ids)


@no_deadline
@given(world=worlds())
def test_eligible_pins_come_first_in_pin_order(world):
    result = world.run()
    pins = world.eligible_pins()
    assert result.ids[: len(pins)].tolist() == pins
    assert all(REASON_PINNED in r for r in result.reasons[: len(pins)])
    assert not any(REASON_PINNED in r for r in result.reasons[len(pins) :])


def check_tail_quota(world: World) -> None:
    """t(p) >= min(floor(share * p), t(P) + min(p - P, T)) for every prefix p past the pins."""
    result = world.run()
    ids = result.ids
    n_pins = len(world.eligible_pins())
    pins = set(world.eligible_pins())
    supply = sum(
        1 for i in world.candidate_best_scores() if i not in pins and not world.catalog.is_head[i]
    )
    t = tail_prefix_counts(world, ids)
    share = world.policy.min_tail_share
    for p in range(n_pins + 1, len(ids) + 1):
        wanted = math.floor(share * p + 1e-9)
        feasible = t[n_pins] + min(p - n_pins, supply)
        assert t[p] >= min(wanted, feasible), (p, t.tolist(), wanted, feasible)


@no_deadline
@given(world=worlds())
def test_tail_quota_holds_in_every_prefix_where_feasible(world):
    check_tail_quota(world)


@no_deadline
@given(
    world=worlds(
        rules=False,
        share=st.sampled_from([0.2, 1 / 3, 0.5, 0.7, 1.0]),
        diversity=st.sampled_from([0.0, 0.3, 1.0]),
        exploration=st.sets(st.integers(0, 12), max_size=3).map(tuple),
    )
)
def test_tail_quota_holds_with_diversity_and_exploration(world):
    # Without filters the lists are long and the quota binds often, MMR included.
    check_tail_quota(world)


@no_deadline
@given(world=worlds())
def test_policy_scores_are_standardised_scores_plus_active_boosts(world):
    result = world.run()
    expected = reference_policy_scores(world)
    for item, got, raw in zip(result.ids.tolist(), result.policy_scores, result.scores):
        if item in expected:
            assert math.isclose(got, expected[item], rel_tol=1e-9, abs_tol=1e-9)
            assert raw == world.candidate_best_scores()[item]
        else:  # a pin that is not a candidate
            assert math.isnan(got) and math.isnan(raw)


@no_deadline
@given(world=worlds())
def test_exploration_slot_takes_best_never_shown_item_when_there_is_one(world):
    result = world.run()
    ids = result.ids.tolist()
    pins = world.eligible_pins()
    adj = reference_policy_scores(world)
    tail_supply = {i for i in adj if i not in pins and not world.catalog.is_head[i]}
    t = tail_prefix_counts(world, result.ids)
    for pos in sorted(world.policy.exploration_positions):
        if pos < len(pins) or pos >= len(ids):
            continue
        placed = set(ids[:pos])
        forced = bool(tail_supply - placed) and t[pos] < math.floor(
            world.policy.min_tail_share * (pos + 1) + 1e-9
        )
        fresh = [
            i
            for i in adj
            if i not in placed
            and i not in pins
            and not world.catalog.ever_shown[i]
            and (not forced or not world.catalog.is_head[i])
        ]
        if fresh:
            assert not world.catalog.ever_shown[ids[pos]]
            assert REASON_EXPLORATION in result.reasons[pos]
            assert math.isclose(adj[ids[pos]], max(adj[i] for i in fresh), abs_tol=1e-9)
        else:
            assert REASON_EXPLORATION not in result.reasons[pos]


@no_deadline
@given(world=worlds(rules=False))
def test_no_boost_and_no_rules_is_pure_score_order(world):
    result = world.run()
    expected, seen = [], set()
    order = sorted(range(len(world.scores)), key=lambda r: (-world.scores[r], r))
    for r in order:
        item = int(world.candidates[r])
        if item >= 0 and math.isfinite(world.scores[r]) and item not in seen:
            seen.add(item)
            expected.append(item)
    assert result.ids.tolist() == expected[: world.k]
    assert all(r == [] for r in result.reasons)


@no_deadline
@given(world=worlds())
def test_diversity_zero_is_the_same_as_no_diversity(world):
    policy = replace(world.policy, diversity=0.0)
    with_vectors = world.run(policy=policy)
    without_vectors = world.run(policy=policy, catalog=replace(world.catalog, vectors=None))
    assert with_vectors.ids.tolist() == without_vectors.ids.tolist()
    assert with_vectors.reasons == without_vectors.reasons


@no_deadline
@given(world=worlds(), scale=st.sampled_from([0.25, 4.0, 1024.0]))
def test_result_does_not_depend_on_the_score_scale(world, scale):
    # Powers of two scale exactly in floating point, so ties stay ties.
    a, b = world.run(), world.run(scores=world.scores * scale)
    assert a.ids.tolist() == b.ids.tolist()
    assert a.reasons == b.reasons


@settings(max_examples=200, deadline=None)
@given(
    world=worlds(diversity=0.0, exploration=()),
    boosts=st.lists(st.floats(-3, 6), min_size=2, max_size=2).map(sorted),
)
def test_higher_tail_boost_never_lowers_tail_count_in_any_prefix(world, boosts):
    # True for the greedy without MMR and exploration: each segment keeps its own order,
    # and a higher boost only ever turns a head-vs-tail comparison towards the tail.
    low = world.run(policy=replace(world.policy, tail_boost=boosts[0]))
    high = world.run(policy=replace(world.policy, tail_boost=boosts[1]))
    assert len(low.ids) == len(high.ids)
    assert np.all(tail_prefix_counts(world, high.ids) >= tail_prefix_counts(world, low.ids))
