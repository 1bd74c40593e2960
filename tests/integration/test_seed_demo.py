"""seed_demo: a small synthetic shop lands in the database, says it is synthetic, and a rerun adds nothing."""
from __future__ import annotations

import io
import math
from collections import Counter, defaultdict

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count

from recommender.ingestion import do_ingest_events, do_upsert_items
from recommender.models import Event, EventType, Item, ShopUser

pytestmark = pytest.mark.django_db

SMALL = {"items": 200, "users": 300, "weeks": 3, "seed": 3}


def seed(**options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("seed_demo", stdout=out, stderr=err, **{**SMALL, **options})
    return out.getvalue(), err.getvalue()


def test_seed_demo_fills_a_plausible_shop():
    out, err = seed()
    # it says loudly that the data is made up
    assert out.startswith("SYNTHETIC demo data")
    assert "demo events" in err  # progress bar
    assert "records rejected" not in out  # every generated record passed the API's validators
    # every item, with text, category path, brand and price
    assert Item.objects.count() == 200
    assert not Item.objects.filter(title="").exists()
    assert Item.objects.exclude(category__regex=r"^[a-z]+/[a-z]+/[a-z]+$").count() == 0
    assert Item.objects.filter(price__isnull=True).count() == 0
    assert Item.objects.values("brand").distinct().count() > 10
    # every event type is there
    types = set(Event.objects.values_list("event_type", flat=True).distinct())
    assert types == set(EventType.values)
    assert Event.objects.filter(event_type=EventType.SEARCH).exclude(query="").count() == Event.objects.filter(
        event_type=EventType.SEARCH
    ).count()
    assert 200 < ShopUser.objects.count() <= 300


def test_popularity_is_long_tailed():
    seed()
    purchases = sorted(
        Event.objects.filter(event_type=EventType.PURCHASE).values("item").annotate(n=Count("id")).values_list("n", flat=True),
        reverse=True,
    )
    k = math.ceil(0.2 * Item.objects.count())
    assert sum(purchases) > 100  # enough purchases for the share to mean something
    assert sum(purchases[:k]) / sum(purchases) > 0.5
    # but not a dead tail: most items are at least viewed
    viewed = Event.objects.filter(event_type=EventType.VIEW).values("item").distinct().count()
    assert viewed > 0.5 * Item.objects.count()


def test_users_differ_in_tastes():
    seed()
    # each shopper's views by top-level category (home/kitchen, kids/toys, ...)
    per_user: dict[int, Counter] = defaultdict(Counter)
    for user, category in Event.objects.filter(event_type=EventType.VIEW).values_list("user_id", "item__category"):
        per_user[user]["/".join(category.split("/")[:2])] += 1
    cats = sorted({c for counts in per_user.values() for c in counts})
    active = [u for u, counts in per_user.items() if sum(counts.values()) >= 5]
    assert len(active) > 50
    matrix = np.array([[per_user[u][c] for c in cats] for u in active], dtype=float)
    matrix /= matrix.sum(axis=1, keepdims=True)
    # shoppers concentrate on a few categories ...
    assert np.sort(matrix, axis=1)[:, -3:].sum(axis=1).mean() > 0.8
    # ... and not the same ones: favourite categories vary, and profiles are far from the average
    assert len(set(matrix.argmax(axis=1).tolist())) >= 6
    cosine = (matrix @ matrix.T) / np.outer(np.linalg.norm(matrix, axis=1), np.linalg.norm(matrix, axis=1))
    assert cosine[np.triu_indices(len(active), 1)].mean() < 0.4


def test_rerun_is_idempotent_and_reset_leaves_other_data_alone():
    # given a real shop's own rows next to the demo
    do_upsert_items([{"item_id": "real-1", "title": "Real mug"}])
    do_ingest_events([{"user_id": "real-u", "item_id": "real-1", "event_type": "view", "timestamp": "2024-05-01T10:00:00Z", "event_id": "r1"}])
    out1, _ = seed()
    counts = (Item.objects.count(), ShopUser.objects.count(), Event.objects.count())
    # when it runs again
    out2, _ = seed()
    # then nothing is added, and the summary says the events were already there
    assert (Item.objects.count(), ShopUser.objects.count(), Event.objects.count()) == counts
    assert "events stored: 0;" in out2
    # when it runs with --reset
    out3, _ = seed(reset=True)
    # then the demo is rebuilt to the same size and the shop's own rows are untouched
    assert "Deleted demo data" in out3
    assert (Item.objects.count(), ShopUser.objects.count(), Event.objects.count()) == counts
    assert Event.objects.filter(event_id="r1").exists() and Item.objects.filter(external_id="real-1").exists()
    # when a different seed is added on top, its events are new ones (ids never collide)
    seed(seed=4)
    assert Event.objects.count() > counts[2]


def test_bad_sizes_are_refused():
    with pytest.raises(CommandError, match="at least 1"):
        seed(items=0)
