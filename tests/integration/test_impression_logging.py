"""Impression logging: served lists become one IMPRESSION event per position, once, cheaply.

Runs on PostgreSQL (the set-based writer) and on SQLite (the ORM writer, the demo's database):
``DATABASE_URL`` unset gives SQLite. The tests marked PostgreSQL-only compare both writers on
one database and check the partial indexes of migration 0007.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from recommender.ingestion.events import do_erase_user
from recommender.models import Event, EventType, Item, ServedList, ShopUser
from recommender.serving import catalog, impressions
from recommender.serving.impressions import ServedRecord, do_log_impressions
from tests.conftest import require_postgres

from .pg_plans import explain, leave_only_index

SERVED = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


@pytest.fixture
def items(db) -> dict[str, int]:
    """Ten catalog items: external id -> pk."""
    for n in range(10):
        Item.objects.create(external_id=f"sku-{n}", title=f"Item {n}")
    return dict(Item.objects.values_list("external_id", "pk"))


@pytest.fixture(autouse=True)
def empty_queue():
    impressions.reset()
    yield
    impressions.reset()


def served(items: dict[str, int], user: str, skus: list[str], *, at: datetime = SERVED, request_id: str | None = None,
           variant: str = "") -> ServedRecord:
    return ServedRecord(
        request_id=request_id or str(uuid.uuid4()), served_at=at, endpoint="user", user_id=user, variant=variant,
        policy="fair", model_version="v1", fallback="", item_pks=tuple(items[s] for s in skus),
        item_ids=tuple(skus), segments="ht"[: len(skus)].ljust(len(skus), "t"),
    )


def impression_rows(request_id: str) -> list[tuple]:
    """(sku, user, value, timestamp, event_id) of one list's impressions, in list order."""
    return list(
        Event.objects.filter(request_id=request_id, event_type=EventType.IMPRESSION)
        .order_by("value")
        .values_list("item__external_id", "user__external_id", "value", "timestamp", "event_id")
    )


def test_each_position_becomes_one_impression_with_its_position_time_and_request(items):
    # given a shopper already known and one who is not
    ShopUser.objects.create(external_id="known")
    first = served(items, "known", ["sku-3", "sku-1", "sku-7"], variant="boost")
    second = served(items, "brand-new", ["sku-0", "sku-9"], at=SERVED + timedelta(minutes=5))
    # when the batch is written
    do_log_impressions([first, second])
    # then each list is stored with its events, value = position + 1, at the serving time
    assert impression_rows(first.request_id) == [
        ("sku-3", "known", 1.0, SERVED, None),
        ("sku-1", "known", 2.0, SERVED, None),
        ("sku-7", "known", 3.0, SERVED, None),
    ]
    later = SERVED + timedelta(minutes=5)
    assert impression_rows(second.request_id) == [
        ("sku-0", "brand-new", 1.0, later, None), ("sku-9", "brand-new", 2.0, later, None),
    ]
    lists = {str(sl.request_id): sl for sl in ServedList.objects.all()}
    assert set(lists) == {first.request_id, second.request_id}
    assert lists[first.request_id].items == [items["sku-3"], items["sku-1"], items["sku-7"]]
    assert lists[first.request_id].variant == "boost" and lists[first.request_id].served_at == SERVED
    # the unknown shopper was created once, the known one not again
    assert sorted(ShopUser.objects.values_list("external_id", flat=True)) == ["brand-new", "known"]
    assert all(e.query == "" and e.ingested_at is not None for e in Event.objects.all())


def test_writing_a_batch_again_stores_nothing_twice(items):
    a = served(items, "u1", ["sku-1", "sku-2"])
    b = served(items, "u2", ["sku-3", "sku-4", "sku-5"])
    do_log_impressions([a, b])
    # a retried batch, a list repeated inside one batch, and a new list beside old ones
    do_log_impressions([a, b])
    c = served(items, "u1", ["sku-6"])
    do_log_impressions([b, c, c, a])
    assert Event.objects.filter(event_type=EventType.IMPRESSION).count() == 2 + 3 + 1
    assert ServedList.objects.count() == 3
    assert ShopUser.objects.count() == 2
    assert [r[0] for r in impression_rows(c.request_id)] == ["sku-6"]


def test_items_deleted_since_serving_are_left_out_and_the_rest_is_written(items):
    record = served(items, "u1", ["sku-1", "sku-2", "sku-3"])
    Item.objects.filter(external_id="sku-2").delete()  # a hard delete between serving and the flush
    do_log_impressions([record])
    stored = [(sku, value) for sku, _, value, _, _ in impression_rows(record.request_id)]
    assert stored == [("sku-1", 1.0), ("sku-3", 3.0)]
    assert ServedList.objects.filter(request_id=record.request_id).exists()


def test_a_broken_list_costs_only_itself_and_never_raises(items):
    good = served(items, "u1", ["sku-1"])
    bad = served(items, "u2", ["sku-2"], request_id="not-a-uuid")  # the database rejects it
    for record in (good, bad):
        impressions._enqueue(record)
    assert impressions.flush() == 1
    assert impressions.stats["failed"] == 1 and impressions.stats["written"] == 1
    assert list(ServedList.objects.values_list("user_external_id", flat=True)) == ["u1"]
    assert impressions.flush() == 0  # nothing left queued


def test_erasing_a_shopper_removes_their_impressions(items):
    do_log_impressions([served(items, "leaving", ["sku-1", "sku-2"]), served(items, "staying", ["sku-1"])])
    assert do_erase_user("leaving") == 2
    assert list(Event.objects.values_list("user__external_id", flat=True)) == ["staying"]


def test_erasing_a_shopper_removes_their_id_from_served_lists_and_experiment_rows(items):
    from recommender.models import DailyVariantUser

    do_log_impressions([
        served(items, "leaving", ["sku-1", "sku-2"]), served(items, "leaving", ["sku-3"]),
        served(items, "staying", ["sku-1"]),
    ])
    for variant in ("a", "b"):
        DailyVariantUser.objects.create(day=SERVED.date(), variant=variant, user_external_id="leaving", impressions=2)
    DailyVariantUser.objects.create(day=SERVED.date(), variant="a", user_external_id="staying", impressions=1)
    do_erase_user("leaving")
    owners = sorted(ServedList.objects.values_list("user_external_id", flat=True))
    assert "leaving" not in owners and owners.count("staying") == 1
    tokens = {o for o in owners if o != "staying"}
    assert len(tokens) == 1 and tokens.pop().startswith("erased-")  # one token: still one shopper
    rows = DailyVariantUser.objects.exclude(user_external_id="staying")
    assert rows.count() == 2 and len({r.user_external_id for r in rows}) == 1
    assert not DailyVariantUser.objects.filter(user_external_id="leaving").exists()
    assert sum(r.impressions for r in DailyVariantUser.objects.all()) == 5  # the counts stay


def test_the_impressions_feed_the_daily_cap_counts(items):
    # impression_arrays reads impressions by type and time: the writer's rows must be found there
    do_log_impressions([served(items, "u1", ["sku-1", "sku-2"], at=SERVED), served(items, "u2", ["sku-1"], at=SERVED)])
    pks = np.array(sorted(items.values()))
    today, shown = catalog.impression_arrays(pks, now=SERVED + timedelta(hours=1))
    at = {pk: n for n, pk in enumerate(pks)}
    assert today[at[items["sku-1"]]] == 2 and today[at[items["sku-2"]]] == 1
    assert shown.sum() == 2


# --- PostgreSQL: the set-based writer ----------------------------------------------------------

def _written_statements(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]


def test_a_batch_is_two_statements_whatever_its_size(items):
    require_postgres()
    for size in (1, 50):
        batch = [served(items, f"u{n % 7}", ["sku-1", "sku-2", "sku-3"]) for n in range(size)]
        with CaptureQueriesContext(connection) as captured:
            do_log_impressions(batch)
        written = _written_statements(captured)
        assert len(written) == 2, written  # and no SET (on the flusher's connection no BEGIN, COMMIT)
    assert Event.objects.count() == 51 * 3


def _synchronous_commit() -> str:
    with connection.cursor() as cur:
        cur.execute("SHOW synchronous_commit")
        return cur.fetchone()[0]


def test_the_writing_transaction_does_not_wait_for_the_wal(items):
    """Inside the test's transaction the setting the writer made is still visible: it was made
    in the transaction that wrote the lists (and holds to that transaction's end)."""
    require_postgres()
    assert _synchronous_commit() == "on"
    do_log_impressions([served(items, "wal", ["sku-1"])])
    assert _synchronous_commit() == "off"


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_setting_ends_with_the_write_not_the_session():
    """Autocommit, as on the flusher's connection: the statement's own transaction only, so a
    pooled server connection (PgBouncer, transaction mode) is handed back as it was."""
    require_postgres()
    Item.objects.create(external_id="sku-0", title="Item 0")
    items = dict(Item.objects.values_list("external_id", "pk"))
    assert connection.get_autocommit()
    do_log_impressions([served(items, "autocommit", ["sku-0"])])
    assert Event.objects.filter(event_type=EventType.IMPRESSION).count() == 1
    assert _synchronous_commit() == "on"


def test_a_batch_runs_prepared_statements_planned_once_per_connection(items):
    require_postgres()
    for n in range(3):
        do_log_impressions([served(items, f"p{n}", ["sku-1", "sku-2"])])
    with connection.cursor() as cur:
        cur.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cur.fetchall()]
    # one statement each, reused by every batch
    assert len([p for p in prepared if "INSERT INTO recommender_servedlist" in p]) == 1, prepared
    assert len([p for p in prepared if "INSERT INTO recommender_shopuser" in p]) == 1, prepared
    assert not [p for p in prepared if "SET " in p]
    assert Event.objects.filter(event_type=EventType.IMPRESSION).count() == 6


def test_with_prepared_statements_off_a_batch_prepares_nothing(items, settings):
    """Behind PgBouncer in transaction mode (SERVING_PREPARED_STATEMENTS off) nothing is prepared."""
    require_postgres()
    settings.RECOMMENDER = {**settings.RECOMMENDER, "SERVING_PREPARED_STATEMENTS": False}
    for n in range(2):
        do_log_impressions([served(items, f"q{n}", ["sku-1", "sku-3"])])
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cur.fetchone()[0] == 0
    assert Event.objects.filter(event_type=EventType.IMPRESSION).count() == 4
    assert ShopUser.objects.filter(external_id__in=["q0", "q1"]).count() == 2


def test_the_portable_writer_stores_the_same_rows_as_the_postgresql_one(items):
    require_postgres()
    from django.utils import timezone as dj_timezone

    ShopUser.objects.create(external_id="known")
    shape = [("known", ["sku-3", "sku-1"]), ("fresh", ["sku-0", "sku-9", "sku-4"]), ("known", ["sku-5"])]

    def batch() -> list[ServedRecord]:
        return [served(items, u, skus, at=SERVED + timedelta(seconds=n)) for n, (u, skus) in enumerate(shape)]

    def rows(records: list[ServedRecord]) -> list[list[tuple]]:
        lists = [
            ServedList.objects.filter(request_id=r.request_id).values_list(
                "served_at", "endpoint", "user_external_id", "variant", "policy", "model_version", "fallback", "items",
                "segments",
            ).get()
            for r in records
        ]
        return [lists, [impression_rows(r.request_id) for r in records]]

    sql_batch, orm_batch = batch(), batch()
    now = dj_timezone.now()
    impressions._write_postgresql(sql_batch + sql_batch[:1], now)
    impressions._write_portable(orm_batch + orm_batch[:1], now)
    assert rows(sql_batch) == rows(orm_batch)
    assert Event.objects.count() == 2 * 6
    assert set(Event.objects.values_list("ingested_at", flat=True)) == {now}
    # and each is idempotent against what the other stored
    impressions._write_portable(sql_batch, now)
    impressions._write_postgresql(orm_batch, now)
    assert Event.objects.count() == 2 * 6


def test_attribution_lookups_can_use_the_request_index_that_leaves_impressions_out(items):
    require_postgres()
    from recommender.serving.reports import exposure_report

    record = served(items, "u1", ["sku-1", "sku-2"])
    do_log_impressions([record])
    with CaptureQueriesContext(connection) as captured:
        exposure_report(SERVED - timedelta(days=1), SERVED + timedelta(days=1))
    (sql,) = [q["sql"] for q in captured.captured_queries if '"request_id" IS NOT NULL' in q["sql"]]
    sql = sql[sql.index("SELECT"):]  # .iterator() reads through a server-side cursor
    # Only the partial index is left to read from: a query whose WHERE clause does not imply
    # its predicate falls back to a sequential scan.
    leave_only_index("rec_event_request_noimp")
    assert "rec_event_request_noimp" in explain(sql), explain(sql)
    clicks = f"SELECT item_id FROM recommender_event WHERE request_id = '{record.request_id}' AND event_type = 3"
    assert "rec_event_request_noimp" in explain(clicks)
    # a list's impressions are never looked up through it
    shown = f"SELECT item_id FROM recommender_event WHERE request_id = '{record.request_id}' AND event_type = 7"
    assert "rec_event_request_noimp" not in explain(shown)


def test_impressions_stay_out_of_the_request_and_event_id_indexes_only(db):
    require_postgres()
    with connection.cursor() as cur:
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'recommender_event'")
        defs = dict(cur.fetchall())
    leaves_out = f"NOT (event_type = {int(EventType.IMPRESSION)})"
    assert leaves_out in defs["rec_event_request_noimp"] and "request_id IS NOT NULL" in defs["rec_event_request_noimp"]
    assert "rec_event_request" not in defs
    assert "event_id IS NOT NULL" in defs["rec_event_unique_event_id"]  # impressions carry no event_id
    # what reports, erasure and the foreign key checks of deletes need keeps every row
    for name in ("rec_event_time", "rec_event_user_time", "rec_event_item_time", "rec_event_ingested"):
        assert "WHERE" not in defs[name], defs[name]
