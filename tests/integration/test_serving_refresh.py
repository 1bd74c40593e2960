"""The serving process's periodic refreshes are incremental and equal a full recount.

Impressions: an :class:`ImpressionTracker` reads only batches it has not counted (by their
``ingested_at`` stamp), including a batch that commits after a later one, and recounts at UTC
midnight. Catalog: :func:`refresh_catalog` applies only the item rows changed since the last
read (price, stock, deactivation, soft delete, new items appended) and must equal a full read.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from django.db import transaction
from django.utils import timezone as dj_timezone

from recommender.ingestion import do_upsert_items
from recommender.ingestion.items import do_delete_item
from recommender.ingestion.events import do_erase_user
from recommender.models import Event, EventType, ImpressionBatch, Item, ShopUser
from recommender.serving import catalog as cat
from recommender.serving.impressions import ServedRecord, do_log_impressions
from tests.conftest import require_postgres

pytestmark = pytest.mark.django_db


def _items(n: int = 6) -> np.ndarray:
    do_upsert_items([{"item_id": f"sku-{i}", "title": f"Item {i}", "category": f"c{i % 2}", "price": 10 + i}
                     for i in range(n)])
    return np.array(sorted(Item.objects.values_list("pk", flat=True)), dtype=np.int64)


def _served(pks, user: str, at: datetime) -> ServedRecord:
    return ServedRecord(
        request_id=str(uuid.uuid4()), served_at=at, endpoint="user", user_id=user, variant="", policy="fair",
        model_version="v1", fallback="", item_pks=tuple(int(p) for p in pks), item_ids=tuple(f"x{p}" for p in pks),
        segments="t" * len(pks),
    )


def _raw_batch(pks, stamp: datetime, at: datetime, user: str = "late") -> None:
    """Impression rows as one writer batch stamped ``stamp`` (inserted now: a late commit)."""
    shopper, _ = ShopUser.objects.get_or_create(external_id=user)
    with transaction.atomic():
        Event.objects.bulk_create([
            Event(user=shopper, item_id=int(pk), event_type=EventType.IMPRESSION, value=1.0, timestamp=at,
                  ingested_at=stamp)
            for pk in pks
        ])
        ImpressionBatch.objects.create(ingested_at=stamp, events=len(pks))


def test_incremental_impressions_equal_a_full_recount_after_batches_and_a_late_commit():
    pks = _items()
    now = dj_timezone.now()
    tracker = cat.ImpressionTracker(pks)
    assert tracker.today.sum() == 0 and not tracker.shown.any()
    do_log_impressions([_served(pks[:3], "u1", now), _served(pks[1:4], "u2", now)])
    tracker.step()
    do_log_impressions([_served(pks[2:5], "u3", now)])
    tracker.step()
    assert tracker.today.tolist() == cat.impression_arrays(pks)[0].tolist() == [1, 2, 3, 2, 1, 0]
    # A batch stamped before the last one counted, committed only now (its writer was slow).
    _raw_batch([pks[0], pks[5], pks[5]], dj_timezone.now() - timedelta(seconds=20), now)
    tracker.step()
    do_log_impressions([_served(pks[:1], "u4", now)])
    tracker.step()
    tracker.step()  # nothing new: nothing counted twice
    today, shown = cat.impression_arrays(pks)
    assert tracker.today.tolist() == today.tolist() == [3, 2, 3, 2, 1, 2]
    assert tracker.shown.tolist() == shown.tolist()
    assert tracker.full_recounts == 1  # the increments did it, not a recount


def test_an_erased_shoppers_impressions_recount_once():
    pks = _items()
    tracker = cat.ImpressionTracker(pks)
    now = dj_timezone.now()
    do_log_impressions([_served(pks[:2], "u1", now), _served(pks[1:3], "u2", now)])
    tracker.step()
    assert tracker.today.tolist() == [1, 2, 1, 0, 0, 0]
    assert do_erase_user("u1") == 2  # their events; the deletion is logged as a batch row
    tracker.step()
    assert tracker.full_recounts == 2
    assert tracker.today.tolist() == cat.impression_arrays(pks)[0].tolist() == [0, 1, 1, 0, 0, 0]
    tracker.step()
    tracker.step()  # the deletion row is reflected once, not on every step
    assert tracker.full_recounts == 2


def test_two_batches_with_one_stamp_recount():
    pks = _items()
    tracker = cat.ImpressionTracker(pks)
    stamp = dj_timezone.now()
    _raw_batch(pks[:2], stamp, stamp, user="a")
    tracker.step()
    _raw_batch(pks[:1], stamp, stamp, user="b")  # another writer, the same microsecond
    tracker.step()
    assert tracker.full_recounts == 2
    assert tracker.today.tolist() == cat.impression_arrays(pks)[0].tolist() == [2, 1, 0, 0, 0, 0]


def test_a_step_reads_batch_rows_and_only_the_new_batches_events():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    pks = _items()
    tracker = cat.ImpressionTracker(pks)
    now = dj_timezone.now()
    do_log_impressions([_served(pks[:3], "u1", now)])
    with CaptureQueriesContext(connection) as ctx:
        tracker.step()
    assert len(ctx.captured_queries) == 2  # the batch rows, then one batch's events
    assert "recommender_impressionbatch" in ctx.captured_queries[0]["sql"]
    with CaptureQueriesContext(connection) as ctx:
        tracker.step()
    assert len(ctx.captured_queries) == 1  # nothing new: the batch rows only
    assert "recommender_event" not in ctx.captured_queries[0]["sql"]


def test_impressions_ingested_through_the_events_api_are_tracked():
    from recommender.ingestion import do_ingest_events

    pks = _items()
    tracker = cat.ImpressionTracker(pks)
    at = dj_timezone.now().isoformat()
    do_ingest_events([
        {"user_id": "s1", "item_id": "sku-1", "event_type": "impression", "timestamp": at, "event_id": "e1"},
        {"user_id": "s1", "item_id": "sku-2", "event_type": "impression", "timestamp": at, "event_id": "e2"},
        {"user_id": "s1", "item_id": "sku-2", "event_type": "click", "timestamp": at, "event_id": "e3"},
    ])
    # A retried batch stores nothing and logs no batch.
    result = do_ingest_events([
        {"user_id": "s1", "item_id": "sku-1", "event_type": "impression", "timestamp": at, "event_id": "e1"},
    ])
    assert result.stored == 0
    assert list(ImpressionBatch.objects.values_list("events", flat=True)) == [2]
    tracker.step()
    assert tracker.today.tolist() == cat.impression_arrays(pks)[0].tolist() == [0, 1, 1, 0, 0, 0]


def test_old_batch_rows_are_pruned():
    from recommender.serving.impressions import prune_batches

    now = dj_timezone.now()
    ImpressionBatch.objects.create(ingested_at=now - timedelta(days=3), events=5)
    ImpressionBatch.objects.create(ingested_at=now - timedelta(hours=1), events=7)
    assert prune_batches(now) == 1
    assert list(ImpressionBatch.objects.values_list("events", flat=True)) == [7]


def test_midnight_starts_a_new_day_with_a_full_recount():
    pks = _items()
    eve = datetime(2026, 3, 10, 23, 58, tzinfo=timezone.utc)
    _raw_batch([pks[0], pks[1]], eve, eve)
    tracker = cat.ImpressionTracker(pks, now=eve + timedelta(minutes=1))
    assert tracker.today.tolist() == [1, 1, 0, 0, 0, 0]
    after = eve + timedelta(minutes=3)  # 00:01 the next day
    _raw_batch([pks[2]], after, after)
    tracker.step(now=after + timedelta(seconds=30))
    assert tracker.full_recounts == 2
    assert tracker.today.tolist() == [0, 0, 1, 0, 0, 0]
    assert tracker.shown.tolist() == [True, True, True, False, False, False]  # within the lookback


def _equal(a: cat.Catalog, b: cat.Catalog) -> None:
    assert a.pks.tolist() == b.pks.tolist()
    for name in ("external_ids", "titles", "in_stock", "is_active", "is_live", "created_ts"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    assert np.array_equal(a.price, b.price, equal_nan=True)
    names = lambda c: [{v: k for k, v in c.category_codes.items()}.get(x, "") for x in c.category.tolist()]  # noqa: E731
    assert names(a) == names(b)
    assert a.by_external_id == b.by_external_id


def test_incremental_catalog_refresh_picks_up_changes_and_new_items():
    pks = _items()
    first = cat.load_catalog(pks, {30})
    same = cat.refresh_catalog(first, pks, cat.read_item_changes(first), {30}, counts_due=False)
    assert same is first  # nothing moved: the same object, its derived caches kept
    do_upsert_items([
        {"item_id": "sku-1", "title": "Item 1", "category": "c1", "price": 99.5},  # price
        {"item_id": "sku-2", "title": "Item 2", "category": "c0", "price": 12, "in_stock": False},  # stock
        {"item_id": "sku-3", "title": "Item 3", "category": "brand-new", "price": 13, "is_active": False},
    ])
    do_delete_item("sku-4")
    do_upsert_items([{"item_id": "sku-new", "title": "New", "category": "c0", "price": 5}])
    changes = cat.read_item_changes(first)
    assert not changes.hard_deleted
    grown = np.append(pks, Item.objects.get(external_id="sku-new").pk)
    fresh = cat.refresh_catalog(first, pks, changes, {30}, counts_due=False)
    assert fresh is not first
    _equal(fresh, cat.load_catalog(pks, {30}))
    j = {e: n for n, e in enumerate(fresh.external_ids.tolist())}
    assert fresh.price[j["sku-1"]] == 99.5 and not fresh.in_stock[j["sku-2"]]
    assert not fresh.is_active[j["sku-3"]] and "brand-new" in fresh.category_codes
    assert not fresh.is_live[j["sku-4"]] and not fresh.is_active[j["sku-4"]]
    assert first.price[j["sku-1"]] == 11  # requests on the old catalog saw no torn update
    appended = cat.refresh_catalog(fresh, grown, cat.read_item_changes(fresh), {30}, counts_due=True)
    _equal(appended, cat.load_catalog(grown, {30}))
    assert appended.external_ids[-1] == "sku-new" and appended.by_external_id["sku-new"] == len(pks)
    assert len(appended.impressions_today) == len(grown) and appended.tracker is not first.tracker


def test_a_hard_delete_is_noticed():
    pks = _items()
    first = cat.load_catalog(pks, {30})
    Item.objects.filter(external_id="sku-5").delete()
    assert cat.read_item_changes(first).hard_deleted


# --- through the serving state: the refresh a request triggers --------------------------------

def test_the_serving_state_refreshes_items_and_impressions_incrementally(serving_settings, clock, tmp_path):
    from recommender.serving import services, state

    from .serving_data import item_record, make_shop, write_version

    make_shop()
    write_version(tmp_path / "artifacts", "v1")
    services.recommend_for_user("u1", k=4)
    space = state.get_state().current()[0]
    tracker = space.catalog.tracker
    j = space.catalog.by_external_id
    do_upsert_items([{**item_record(5), "price": 77.0, "in_stock": False}, {**item_record(6), "is_active": False}])
    do_log_impressions([_served(space.index.item_pks[:3], "u2", dj_timezone.now())])
    clock.advance(11.0)  # impressions are due, the catalog not yet
    services.recommend_for_user("u1", k=4)
    assert state.get_state().current()[0] is space
    assert space.catalog.impressions_today[:3].tolist() == [1, 1, 1]
    clock.advance(50.0)  # now the catalog is due too
    services.recommend_for_user("u1", k=4)
    fresh = state.get_state().current()[0]
    assert fresh is not space and fresh.catalog.tracker is tracker and tracker.full_recounts == 1
    assert fresh.catalog.price[j["sku-5"]] == 77.0 and not fresh.catalog.in_stock[j["sku-5"]]
    assert not fresh.catalog.is_active[j["sku-6"]] and space.catalog.is_active[j["sku-6"]]
    _equal(fresh.catalog, cat.load_catalog(fresh.index.item_pks, {30}))
    assert fresh.catalog.impressions_today.tolist() == cat.impression_arrays(fresh.index.item_pks)[0].tolist()


def test_shown_within_the_lookback_reads_filled_days_from_the_count_table():
    from recommender.models import DailyItemCount, ReportDay

    pks = _items()
    now = datetime(2026, 3, 20, 15, 0, tzinfo=timezone.utc)
    filled_day = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)
    open_day = datetime(2026, 3, 12, 12, tzinfo=timezone.utc)
    # A filled day: its count rows say item 1 was shown; its raw events (item 0) are not read.
    _raw_batch([pks[0]], filled_day, filled_day, user="a")
    ReportDay.objects.create(day=filled_day.date(), status=ReportDay.Status.FILLED)
    DailyItemCount.objects.create(day=filled_day.date(), item_id=int(pks[1]), segment="tail", attributed=True,
                                  impressions=3)
    DailyItemCount.objects.create(day=filled_day.date(), item_id=int(pks[5]), segment="tail", attributed=False,
                                  impressions=0, clicks=1)  # clicked, never shown
    # A day the job has not filled (or re-opened) and today: read from the events.
    _raw_batch([pks[2]], open_day, open_day, user="b")
    ReportDay.objects.create(day=open_day.date(), status=ReportDay.Status.PENDING)
    _raw_batch([pks[3]], now - timedelta(hours=1), now - timedelta(hours=1), user="c")
    # Before the lookback: not shown.
    old = now - timedelta(days=40)
    _raw_batch([pks[4]], old, old, user="d")
    shown = cat.shown_within(pks, now - timedelta(days=30), now)
    assert shown.tolist() == [False, True, True, True, False, False]
    # Without any filled day, every day comes from the events (the job never ran).
    ReportDay.objects.all().delete()
    assert cat.shown_within(pks, now - timedelta(days=30), now).tolist() == [True, False, True, True, False, False]


def test_the_changed_items_query_can_use_the_updated_at_index():
    """Every worker asks for the changed items each minute: an index range, not a table scan."""
    from django.db import connection

    require_postgres()  # EXPLAIN's output is PostgreSQL's
    _items()
    since = dj_timezone.now() - timedelta(minutes=1)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")  # a tiny test table: ask whether it *can*
        cur.execute("EXPLAIN " + cat._item_sql("WHERE updated_at >= %s"), [since])
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "rec_item_updated" in plan, plan
