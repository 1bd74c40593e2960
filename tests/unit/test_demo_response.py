"""The synthetic shoppers' response model: the generator's world, position bias, utility, determinism. No database."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import numpy as np
import pytest

from recommender.demo.response import ResponseModel, build_world, item_index, user_index
from recommender.demo.synthetic import generate_shop

PARAMS = {"n_items": 400, "n_users": 120, "weeks": 2, "seed": 5}


@pytest.fixture(scope="module")
def world():
    return build_world(**PARAMS)


@pytest.fixture(scope="module")
def model(world):
    return ResponseModel(world)


def test_the_world_is_the_generated_shops_world(world):
    # given the shop the demo seeds with the same parameters
    shop = generate_shop(**PARAMS, now=datetime(2026, 6, 1, tzinfo=timezone.utc))
    # then the rebuilt world has the same hidden truths, and the same titles
    np.testing.assert_array_equal(world.item_category, shop.item_category)
    np.testing.assert_array_equal(world.item_quality, shop.item_quality)
    np.testing.assert_array_equal(world.user_taste, shop.user_taste)
    np.testing.assert_array_equal(world.user_beta, shop.user_price_sensitivity)
    assert list(world.item_titles) == [it["title"] for it in shop.items]
    assert world.item_price.tolist() == [it["price"] for it in shop.items]
    # and another seed is another world
    assert not np.array_equal(build_world(**{**PARAMS, "seed": 6}).item_quality, world.item_quality)


def test_relative_utility_is_one_for_the_typical_item(world, model):
    # A session picks a category by taste; its items average 1 relative to that shopper's typical item.
    for user in range(0, world.n_users, 7):
        rel = model.relative_utility(user, np.arange(world.n_items))
        per_category = np.array([rel[world.item_category == c].mean() for c in range(world.user_taste.shape[1])])
        assert float(world.user_taste[user] @ per_category) == pytest.approx(1.0)


def test_deeper_positions_get_fewer_clicks(world, model):
    user = 3
    liked = int(np.argmax(model.relative_utility(user, np.arange(world.n_items))))
    # the same item at every position
    items = [liked] * 10
    p = model.click_probability(user, np.array(items))
    assert np.all(np.diff(p) < 0)
    # sampled: position 0 is clicked clearly more often than position 9
    rng = np.random.default_rng(0)
    clicks = Counter(
        r.position for _ in range(4_000) for r in model.respond(user, items, rng) if r.event_type == "click"
    )
    assert clicks[0] > 1.5 * clicks[9] > 0


def test_higher_utility_items_are_clicked_and_bought_more(world, model):
    user = 11
    favourite = int(np.argmax(world.user_taste[user]))
    in_cat = np.flatnonzero(world.item_category == favourite)
    rel = model.relative_utility(user, in_cat)
    best, worst = int(in_cat[np.argmax(rel)]), int(in_cat[np.argmin(rel)])
    assert rel.max() > 2 * rel.min()
    # an item of a category the shopper hardly shops is worth little to them
    other = int(np.argmin(world.user_taste[user]))
    off_taste = int(np.flatnonzero(world.item_category == other)[0])
    assert model.relative_utility(user, np.array([off_taste]))[0] < 0.1

    def outcomes(item: int) -> Counter:
        rng = np.random.default_rng(1)
        return Counter(r.event_type for _ in range(6_000) for r in model.respond(user, [item], rng))

    good, bad, far = outcomes(best), outcomes(worst), outcomes(off_taste)
    assert good["click"] > 1.3 * bad["click"]
    assert bad["click"] > 2 * far["click"]
    assert good["purchase"] > bad["purchase"]


def test_responses_follow_the_funnel_and_are_deterministic(world, model):
    items = list(range(20, 30))
    for user in range(30):
        a = model.respond(user, items, np.random.default_rng([9, user]))
        b = model.respond(user, items, np.random.default_rng([9, user]))
        assert a == b
        kinds = {(r.position, r.event_type) for r in a}
        for r in a:
            assert r.item == items[r.position]
            if r.event_type in ("view", "add_to_cart"):
                assert (r.position, "click") in kinds
            if r.event_type == "purchase":
                assert (r.position, "add_to_cart") in kinds
                cart = next(x for x in a if x.position == r.position and x.event_type == "add_to_cart")
                assert r.offset_s > cart.offset_s and r.value == cart.value
    # other seeds give other responses
    runs = {tuple(tuple(model.respond(u, items, np.random.default_rng([s, u]))) for u in range(30)) for s in range(3)}
    assert len(runs) == 3


def test_unknown_items_get_no_response_and_ids_parse(model):
    assert model.respond(0, [None, None], np.random.default_rng(0)) == []
    assert item_index("demo-i00012") == 12 and item_index("sku-12") is None and item_index("demo-ixx") is None
    assert user_index("demo-u00007") == 7 and user_index("demo-i00007") is None
