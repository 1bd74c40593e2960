"""The synthetic demo shop generator: deterministic, plausible, long-tailed, with distinct tastes. No database."""
from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from recommender.demo.synthetic import (
    DEFAULT_VOCABULARY,
    CategoryVocab,
    Vocabulary,
    generate_shop,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
EVENT_TYPES = {"impression", "view", "click", "search", "add_to_cart", "purchase", "rating"}
API_EVENT_FIELDS = {"user_id", "item_id", "event_type", "timestamp", "value", "query", "request_id", "event_id"}
API_ITEM_FIELDS = {"item_id", "title", "description", "category", "brand", "price", "attributes", "is_active", "in_stock"}


@pytest.fixture(scope="module")
def shop():
    return generate_shop(n_items=600, n_users=400, weeks=4, seed=7, now=NOW)


def test_same_seed_same_shop_other_seed_other_shop(shop):
    again = generate_shop(n_items=600, n_users=400, weeks=4, seed=7, now=NOW)
    assert again.items == shop.items
    assert again.events == shop.events
    other = generate_shop(n_items=600, n_users=400, weeks=4, seed=8, now=NOW)
    assert other.items != shop.items
    assert {e["event_id"] for e in other.events}.isdisjoint({e["event_id"] for e in shop.events})


def test_event_ids_do_not_depend_on_the_clock(shop):
    # given the same parameters run a day later
    later = generate_shop(n_items=600, n_users=400, weeks=4, seed=7, now=NOW.replace(day=2))
    # then the same events carry the same ids (so a rerun stores nothing twice), only shifted in time
    assert [e["event_id"] for e in later.events] == [e["event_id"] for e in shop.events]
    assert later.events[0]["timestamp"] != shop.events[0]["timestamp"]


def test_records_are_in_the_api_format(shop):
    assert len(shop.items) == 600
    assert len({it["item_id"] for it in shop.items}) == 600
    for it in shop.items:
        assert set(it) <= API_ITEM_FIELDS
        assert it["title"] and it["description"] and it["brand"]
        assert it["category"].count("/") == 2  # e.g. home/kitchen/mugs
        assert it["price"] > 0
        assert it["attributes"]["synthetic"] is True
    ids = [e["event_id"] for e in shop.events]
    assert len(set(ids)) == len(ids)
    for e in shop.events:
        assert set(e) <= API_EVENT_FIELDS
        assert e["event_type"] in EVENT_TYPES
        ts = datetime.fromisoformat(e["timestamp"])
        assert shop.start <= ts < shop.end and ts.tzinfo is not None
    stamps = [e["timestamp"] for e in shop.events]
    assert stamps == sorted(stamps)
    assert shop.end == NOW


def test_every_event_type_with_a_plausible_funnel(shop):
    counts = shop.event_type_counts()
    assert set(counts) == EVENT_TYPES
    assert counts["impression"] > counts["view"] > counts["add_to_cart"] > counts["purchase"] > counts["rating"]
    ctr = counts["click"] / counts["impression"]
    assert 0.02 < ctr < 0.2
    assert 0.3 < counts["purchase"] / counts["add_to_cart"] < 0.8
    searches = [e for e in shop.events if e["event_type"] == "search"]
    assert all(e["query"] for e in searches)
    # a query names the item searched for (its noun is in its title)
    titles = {it["item_id"]: it["title"].lower() for it in shop.items}
    assert all(e["query"].split()[-1] in titles[e["item_id"]] for e in searches)


def test_ratings_follow_purchases_and_are_one_to_five(shop):
    bought: dict[tuple[str, str], str] = {}
    for e in shop.events:
        if e["event_type"] == "purchase":
            bought.setdefault((e["user_id"], e["item_id"]), e["timestamp"])
    ratings = [e for e in shop.events if e["event_type"] == "rating"]
    assert ratings
    for e in ratings:
        assert e["value"] in {1.0, 2.0, 3.0, 4.0, 5.0}
        assert bought[(e["user_id"], e["item_id"])] < e["timestamp"]
    assert len({e["value"] for e in ratings}) >= 3


def test_popularity_is_long_tailed_but_the_tail_is_alive(shop):
    purchases = Counter(e["item_id"] for e in shop.events if e["event_type"] == "purchase")
    views = Counter(e["item_id"] for e in shop.events if e["event_type"] == "view")
    k = math.ceil(0.2 * len(shop.items))
    top_purchases = sum(sorted(purchases.values(), reverse=True)[:k]) / sum(purchases.values())
    top_views = sum(sorted(views.values(), reverse=True)[:k]) / sum(views.values())
    assert top_purchases > 0.5
    assert 0.5 < top_views < 0.95
    # a long tail, not a dead one: most items are seen at least once
    assert len(views) > 0.6 * len(shop.items)


def test_users_have_distinct_tastes_that_drive_behaviour(shop):
    # ground truth: each shopper mixes a few categories, and shoppers differ
    taste = shop.user_taste
    assert np.allclose(taste.sum(axis=1), 1)
    assert len(set(taste.argmax(axis=1).tolist())) == len(shop.category_paths)
    assert np.sort(taste, axis=1)[:, -3:].sum(axis=1).mean() > 0.9
    # observed: a shopper's views fall mostly in their own favourite categories
    item_cat = {it["item_id"]: c for it, c in zip(shop.items, shop.item_category.tolist())}
    per_user: dict[int, Counter] = defaultdict(Counter)
    for e in shop.events:
        if e["event_type"] == "view":
            per_user[int(e["user_id"][6:])][item_cat[e["item_id"]]] += 1
    shares = []
    for u, cats in per_user.items():
        top = set(np.argsort(taste[u])[-3:].tolist())
        shares.append(sum(n for c, n in cats.items() if c in top) / sum(cats.values()))
    assert np.mean(shares) > 0.85
    # and price sensitivity differs between shoppers
    assert shop.user_price_sensitivity.std() > 0.2


def test_new_items_are_cold(shop):
    launch = shop.item_launch
    new = np.flatnonzero(launch > 0)
    assert 0.03 * len(shop.items) <= len(new) <= 0.08 * len(shop.items)
    start = shop.start.timestamp()
    first_seen: dict[str, float] = {}
    counts = Counter()
    for e in shop.events:
        first_seen.setdefault(e["item_id"], datetime.fromisoformat(e["timestamp"]).timestamp())
        counts[e["item_id"]] += 1
    ids = [it["item_id"] for it in shop.items]
    for i in new.tolist():
        if ids[i] in first_seen:
            assert first_seen[ids[i]] >= start + launch[i]  # nothing before launch
    new_mean = np.mean([counts[ids[i]] for i in new])
    old_mean = np.mean([counts[ids[i]] for i in np.flatnonzero(launch <= 0)])
    assert new_mean < 0.5 * old_mean


def test_prices_are_lognormal_per_category(shop):
    prices = np.array([it["price"] for it in shop.items])
    cats = shop.item_category
    medians = {c: np.median(prices[cats == c]) for c in set(cats.tolist())}
    assert max(medians.values()) > 2.5 * min(medians.values())  # stationery is cheap, sports is not
    assert prices.min() >= 0.99 and np.log(prices).std() > 0.3


def test_vocabulary_can_be_swapped():
    tea = Vocabulary(
        categories=(CategoryVocab("food/tea", {"green": ("sencha", "matcha")}, ("tin",), ("fresh",), 9.0),),
        colours=("jade",),
        brand_stems=("Leaf",),
        brand_suffixes=("House",),
        packs=("50 g",),
        descriptions=("{title} by {brand}.",),
    )
    shop = generate_shop(n_items=30, n_users=20, weeks=1, seed=1, now=NOW, vocabulary=tea, new_item_share=0)
    assert {it["category"] for it in shop.items} == {"food/tea/green"}
    assert all(("Sencha" in it["title"]) or ("Matcha" in it["title"]) for it in shop.items)
    assert {it["brand"] for it in shop.items} == {"Leaf House"}
    assert len(DEFAULT_VOCABULARY.categories) >= 10


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        generate_shop(n_items=0, now=NOW)


def test_the_generator_never_imports_django():
    code = (
        "import sys, recommender.demo.synthetic as s; "
        "s.generate_shop(n_items=20, n_users=10, weeks=1); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework')]; "
        "assert not bad, bad"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
