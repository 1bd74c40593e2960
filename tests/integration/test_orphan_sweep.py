"""The events table has no foreign key checks; the hourly sweep removes rows that lost theirs.

A row can lose its shopper or item only while it is being written (an erasure or item delete
racing an impression flush or an ingested batch): the sweep reads the recent rows, deletes
those whose shopper or item is gone, and logs deleted impressions for the serving trackers.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from recommender.ingestion import do_ingest_events, do_upsert_items
from recommender.ingestion.events import do_sweep_orphan_events
from recommender.models import Event, EventType, ImpressionBatch, Item, ShopUser
from recommender.schedule import BEAT_SCHEDULE
from recommender.tasks import sweep_orphan_events

pytestmark = pytest.mark.django_db


def _shop() -> None:
    do_upsert_items([{"item_id": f"sku-{i}", "title": f"Item {i}", "category": "c", "price": 5} for i in range(3)])
    at = timezone.now().isoformat()
    do_ingest_events([
        {"user_id": "alice", "item_id": "sku-0", "event_type": "view", "timestamp": at},
        {"user_id": "alice", "item_id": "sku-1", "event_type": "impression", "timestamp": at},
        {"user_id": "bob", "item_id": "sku-2", "event_type": "purchase", "timestamp": at},
    ])


def _orphan(user_pk: int, item_pk: int, event_type: int, ingested_ago: timedelta = timedelta(0)) -> None:
    """A row written as a racing writer would leave it (PostgreSQL checks no foreign key)."""
    now = timezone.now()
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO recommender_event (user_id, item_id, event_type, value, query, timestamp, ingested_at) "
            "VALUES (%s, %s, %s, NULL, '', %s, %s)",
            [user_pk, item_pk, event_type, now, now - ingested_ago],
        )


def test_rows_of_deleted_shoppers_or_items_are_swept_and_the_rest_kept():
    _shop()
    gone_user = ShopUser.objects.order_by("-pk").first().pk + 1000
    gone_item = Item.objects.order_by("-pk").first().pk + 1000
    alice = ShopUser.objects.get(external_id="alice").pk
    sku = Item.objects.get(external_id="sku-0").pk
    _orphan(gone_user, sku, int(EventType.IMPRESSION))
    _orphan(alice, gone_item, int(EventType.CLICK))
    _orphan(alice, gone_item, int(EventType.IMPRESSION))
    assert Event.objects.count() == 6
    assert do_sweep_orphan_events() == 3
    assert Event.objects.count() == 3
    assert all(e.user_id in {alice, ShopUser.objects.get(external_id="bob").pk} for e in Event.objects.all())
    # The two deleted impressions are logged, so serving processes recount today's counts.
    assert ImpressionBatch.objects.filter(events__lt=0).get().events == -2
    assert do_sweep_orphan_events() == 0  # nothing left: a second run changes nothing


def test_the_sweep_reads_only_the_recent_rows():
    _shop()
    old_gone = Item.objects.order_by("-pk").first().pk + 1000
    _orphan(ShopUser.objects.get(external_id="alice").pk, old_gone, int(EventType.VIEW), timedelta(hours=3))
    assert do_sweep_orphan_events() == 0  # older than the window: not the sweep's to find
    assert do_sweep_orphan_events(since=timezone.now() - timedelta(days=1)) == 1


def test_the_sweep_is_an_hourly_beat_job():
    entry = BEAT_SCHEDULE["recommender-sweep-orphan-events"]
    assert entry["task"] == sweep_orphan_events.name and entry["schedule"] == 3600.0
    _shop()
    _orphan(ShopUser.objects.get(external_id="bob").pk, Item.objects.order_by("-pk").first().pk + 7, 1)
    assert sweep_orphan_events.apply().get() == {"deleted": 1}


def test_deleting_a_shopper_or_an_item_still_deletes_their_events():
    _shop()
    ShopUser.objects.get(external_id="alice").delete()  # Django cascades; the database checks nothing
    assert not Event.objects.filter(user__external_id="alice").exists()
    Item.objects.get(external_id="sku-2").delete()
    assert Event.objects.count() == 0
