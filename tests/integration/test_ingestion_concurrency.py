"""Concurrent clients: simultaneous upserts of the same items both succeed; retries never duplicate."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connections

from recommender.ingestion import do_ingest_events, do_upsert_items
from recommender.models import Event, Item, ShopUser
from tests.conftest import require_postgres

pytestmark = pytest.mark.django_db(transaction=True)


def run_concurrently(fns) -> list:
    barrier = threading.Barrier(len(fns))
    results: list = [None] * len(fns)

    def worker(i, fn):
        try:
            barrier.wait()
            results[i] = fn()
        except Exception as exc:  # the assertion below reports what failed
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.fixture(autouse=True)
def _postgres_only():
    # Concurrency semantics are PostgreSQL's; SQLite (the demo) serialises writers.
    require_postgres()


def test_two_clients_upserting_the_same_items_both_succeed():
    # given two batches that share 200 items, in opposite orders (a deadlock would show here)
    a = [{"item_id": f"sku-{i}", "title": f"A {i}"} for i in range(300)]
    b = [{"item_id": f"sku-{i}", "title": f"B {i}"} for i in reversed(range(100, 400))]
    for _ in range(5):
        results = run_concurrently([lambda: do_upsert_items(a), lambda: do_upsert_items(b)])
        assert not [r for r in results if isinstance(r, Exception)], results
    assert Item.objects.count() == 400
    # each shared item holds one writer's complete record
    assert set(Item.objects.filter(external_id__in=[f"sku-{i}" for i in range(100, 300)]).values_list("title", flat=True)) <= {
        f"{w} {i}" for w in "AB" for i in range(100, 300)
    }


def test_the_same_batch_sent_concurrently_is_stored_once():
    now = datetime.now(timezone.utc)
    batch = [
        {"user_id": f"u{i % 9}", "item_id": f"new-{i % 13}", "event_type": "click",
         "timestamp": (now - timedelta(seconds=i)).isoformat(), "event_id": f"e{i}"}
        for i in range(500)
    ]
    results = run_concurrently([lambda: do_ingest_events(batch) for _ in range(3)])
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r.stored for r in results) == 500
    assert Event.objects.count() == 500
    assert ShopUser.objects.count() == 9 and Item.objects.count() == 13
