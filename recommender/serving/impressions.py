"""Impression logging off the request path: a bounded in-process queue drained by one thread.

Why not a Celery task per request: sending costs a broker round trip on the hot path (and a
connect timeout when the broker is down), and one task per list means one insert per list.
Here a request only appends to a ``queue.Queue`` (microseconds); a daemon thread per process
writes what is queued through :func:`do_log_impressions` at least every
``IMPRESSION_FLUSH_SECONDS``, and sooner once :data:`FLUSH_BATCH` lists wait. A batch cost
PostgreSQL 1.2-1.5 ms a list with the events' foreign key checks and ~0.75 ms without them
(migration 0011; the inserts and five event indexes, 1M events), so 75 lists at once
(300 req/s over two workers, every 0.5 s) held one of two cores for 35-50 ms and requests
queued behind it (the serving benchmark's p99 spikes, issue 4).
Batches of ~8 lists spread the same work out. The PostgreSQL CPU a batch costs is a fixed part
(~0.25 ms with the statements prepared on the flusher's connection; ~0.6 ms when they were
parsed and planned every time) plus ~0.25-0.3 ms a list (the inserts and the indexes). At
300 req/s, the slowest 2% of the serving benchmark's requests nearly all overlap a flush
(``bench/serving.py --worker-trace``: 78-97%, against 22-32% of all requests), because the
flush's PostgreSQL work takes one of the two cores; a separate process writing the same
batches slows requests as much, so it is the database work, not the flusher thread holding
the GIL. Halving the batch halves each such burst at the same CPU per list. The commit does
not wait for the WAL flush (see :func:`_write_postgresql`).

On PostgreSQL a batch is two statements whatever its size: one ensures the shoppers, one
inserts the served lists (``ON CONFLICT (request_id) DO NOTHING``) and generates the impression
events in SQL from the lists it actually inserted, with the batch's ``ImpressionBatch`` row
(how serving processes find new impressions cheaply). That is the idempotency: a list already
stored gets no events again, so impression events need no ``event_id`` (and skip its unique
index). The trade-off: a killed process loses at most one flush interval of impressions, and a
full queue drops lists (counted in :data:`stats`) instead of slowing requests down. Nothing
here ever raises into a request.
"""
from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from ..conf import settings as rec_settings
from ..models import Event, EventType, ImpressionBatch, Item, ServedList, ShopUser
from .db import prepared_cursor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedRecord:
    """One served list as queued for logging (plain values only)."""

    request_id: str
    served_at: datetime
    endpoint: str
    user_id: str
    variant: str
    policy: str
    model_version: str
    fallback: str
    item_pks: tuple[int, ...]
    item_ids: tuple[str, ...]
    segments: str


#: Counters for health pages and tests: lists queued, written, dropped (queue full), failed writes.
stats: dict[str, int] = {"queued": 0, "written": 0, "dropped": 0, "failed": 0}
_queue: queue.Queue[ServedRecord] | None = None
_thread_pid: int | None = None
_start_lock = threading.Lock()


def _get_queue() -> queue.Queue[ServedRecord]:
    global _queue
    if _queue is None:
        _queue = queue.Queue(maxsize=rec_settings.IMPRESSION_QUEUE_SIZE)
    return _queue


def _ensure_thread() -> None:
    """Start the flusher once per process (after a fork the parent's thread does not exist)."""
    global _thread_pid
    if _thread_pid == os.getpid() or rec_settings.IMPRESSION_FLUSH_SECONDS <= 0:
        return
    with _start_lock:
        if _thread_pid != os.getpid():
            threading.Thread(target=_run, name="impression-flusher", daemon=True).start()
            _thread_pid = os.getpid()
            atexit.register(_flush_at_exit)  # a worker that is recycled writes what it holds


#: Lists that make the flusher write before its interval is up (a few ms of database work).
FLUSH_BATCH = 8
#: How often the flusher looks at the queue (at most; never more often than the interval).
FLUSH_POLL_SECONDS = 0.05


def should_flush(queued: int, waited: float, interval: float) -> bool:
    """Write now: a batch's worth is waiting, or the interval since the last write is up."""
    return queued >= FLUSH_BATCH or waited >= interval


#: How often each flusher deletes batch rows older than ``ImpressionBatch.KEEP_BATCHES``.
PRUNE_SECONDS = 600.0


def _run() -> None:
    interval = rec_settings.IMPRESSION_FLUSH_SECONDS
    poll = min(interval, FLUSH_POLL_SECONDS)
    stop = threading.Event()
    last = pruned = time.monotonic()
    while not stop.wait(poll):
        if not should_flush(_get_queue().qsize(), time.monotonic() - last, interval):
            continue
        last = time.monotonic()
        try:
            close_old_connections()
            flush()
            if last - pruned >= PRUNE_SECONDS:
                pruned = last
                prune_batches()
        except Exception:  # the loop must survive anything; flush() already logged
            log.exception("impression flusher")


def prune_batches(now: datetime | None = None) -> int:
    """Delete the impression batch rows older than ``ImpressionBatch.KEEP_BATCHES``; returns how many."""
    cut = (now or timezone.now()) - ImpressionBatch.KEEP_BATCHES
    deleted, _ = ImpressionBatch.objects.filter(ingested_at__lt=cut).delete()
    return deleted


def _flush_at_exit() -> None:
    try:
        flush()
    except Exception:  # the interpreter is shutting down: say what was lost, never raise
        logging.getLogger(__name__).warning("impressions still queued at exit were not written", exc_info=True)


def _enqueue(record: ServedRecord) -> None:
    try:
        _get_queue().put_nowait(record)
        stats["queued"] += 1
    except queue.Full:
        stats["dropped"] += 1


def log_served(result: Any, *, endpoint: str, user_id: str | None, item_pks, segments: list[str], now: datetime) -> None:
    """Queue a served list for logging; never raises (a lost impression must not fail a request)."""
    try:
        record = ServedRecord(
            request_id=result.request_id,
            served_at=now,
            endpoint=endpoint,
            user_id=user_id or rec_settings.ANONYMOUS_USER_ID,
            variant=result.variant or "",
            policy=result.policy or "",
            model_version=result.model_version or "",
            fallback=(result.fallback or {}).get("served", "") if result.fallback else "",
            item_pks=tuple(int(p) for p in item_pks),
            item_ids=tuple(i["item_id"] for i in result.items),
            segments="".join(s[0] for s in segments),
        )
        _enqueue(record)
        _ensure_thread()
    except Exception:
        stats["dropped"] += 1
        log.warning("could not queue impressions of %s", getattr(result, "request_id", "?"), exc_info=True)


def flush(max_records: int = 5_000) -> int:
    """Write what is queued (up to ``max_records`` lists) now; returns the lists written."""
    q = _get_queue()
    batch: list[ServedRecord] = []
    while len(batch) < max_records:
        try:
            batch.append(q.get_nowait())
        except queue.Empty:
            break
    if not batch:
        return 0
    try:
        do_log_impressions(batch)
    except Exception:
        if len(batch) == 1:
            stats["failed"] += 1
            log.exception("could not write served list %s; its impressions are lost", batch[0].request_id)
            return 0
        # One bad record must not cost the others: write them one by one (only on failure).
        log.warning("writing %d served lists failed; retrying them one by one", len(batch), exc_info=True)
        written = 0
        for record in batch:
            try:
                do_log_impressions([record])
                written += 1
            except Exception:
                stats["failed"] += 1
                log.exception("could not write served list %s; its impressions are lost", record.request_id)
        stats["written"] += written
        return written
    stats["written"] += len(batch)
    return len(batch)


def do_log_impressions(records: list[ServedRecord]) -> None:
    """Write served lists and one IMPRESSION event per listed item, all or none; idempotent.

    A list whose ``request_id`` is already stored is skipped with its events, so a batch can
    be written twice. Each event has ``value`` = position + 1, ``timestamp`` = the list's
    ``served_at`` and the list's ``request_id``; items deleted since serving are left out.
    """
    if not records:
        return
    now = timezone.now()
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        _write_postgresql(records, now)  # autocommit: one statement writes lists and events
        return
    # In a caller's transaction, a savepoint: a failed batch must not abort the caller's work.
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _write_postgresql(records, now)
        else:
            _write_portable(records, now)


# The batch travels as one JSON document (one string to quote, whatever its size) and the
# events are generated from the lists the INSERT returns: Python does nothing per position.
# Shoppers are ensured in a statement of their own so that the next one's snapshot sees a
# shopper another process inserted concurrently (ON CONFLICT waited for it to commit).
_USERS_SQL = """
INSERT INTO recommender_shopuser (external_id, created_at)
SELECT DISTINCT t.u, %s::timestamptz FROM json_array_elements_text(%s::json) AS t(u) ORDER BY 1
ON CONFLICT (external_id) DO NOTHING
"""
_LISTS_AND_EVENTS_SQL = f"""
WITH lists AS (
    INSERT INTO recommender_servedlist
        (request_id, served_at, endpoint, user_external_id, variant, policy, model_version, fallback, items, segments)
    SELECT t.r, t.s, t.e, t.u, t.v, t.p, t.m, t.f, t.i, t.g
    FROM json_to_recordset(%(rows)s::json)
        AS t(r uuid, s timestamptz, e text, u text, v text, p text, m text, f text, i jsonb, g text)
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id, served_at, user_external_id, items
), added AS (
    INSERT INTO recommender_event (user_id, item_id, event_type, value, query, request_id, timestamp, ingested_at)
    SELECT su.id, it.id, {int(EventType.IMPRESSION)}, x.pos, '', l.request_id, l.served_at, %(now)s::timestamptz
    FROM lists l
    JOIN recommender_shopuser su ON su.external_id = l.user_external_id
    CROSS JOIN LATERAL jsonb_array_elements_text(l.items) WITH ORDINALITY AS x(item, pos)
    JOIN recommender_item it ON it.id = x.item::bigint
    RETURNING 1
)
-- The batch's row, by which serving processes find its events (ImpressionBatch). The commit
-- of this statement's transaction does not wait for the WAL flush (see _write_postgresql).
INSERT INTO recommender_impressionbatch (ingested_at, events)
SELECT %(now)s::timestamptz, COUNT(*) FROM added
CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
HAVING COUNT(*) > 0
"""



def _list_row(r: ServedRecord) -> dict[str, Any]:
    return {
        "r": r.request_id, "s": r.served_at, "e": r.endpoint, "u": r.user_id[:128], "v": r.variant,
        "p": r.policy, "m": r.model_version, "f": r.fallback[:100], "i": r.item_pks, "g": r.segments,
    }


def _write_postgresql(records: list[ServedRecord], now: datetime) -> None:
    """Two statements, each its own transaction on the flusher's (autocommit) connection.

    The second writes the lists, their events and the batch row in one statement, so they
    land together or not at all; the first only ensures the shoppers exist (idempotent: a
    retry finds them). Impressions are analytics written behind the requests: a crash may
    lose the last ~0.5 s of them (as it loses the queue), so the second statement's commit
    does not wait for the WAL flush (``set_config(..., true)``: its own transaction only,
    never the session's, which behind PgBouncer in transaction mode would be another
    client's). Called inside a caller's transaction, both run in a savepoint of it and the
    setting holds to its end. Without BEGIN, SET LOCAL and COMMIT a batch is 2 round trips
    instead of 5.
    """
    users = orjson.dumps(sorted({r.user_id[:128] for r in records})).decode()
    rows = orjson.dumps([_list_row(r) for r in records]).decode()
    # Prepared on the flusher's connection: parsing and planning these two statements was
    # most of a batch's fixed cost (~0.35 of ~0.6 ms of PostgreSQL CPU), paid on every flush.
    with prepared_cursor() as cur:
        cur.execute(_USERS_SQL, [now, users])
        cur.execute(_LISTS_AND_EVENTS_SQL, {"rows": rows, "now": now})


def _write_portable(records: list[ServedRecord], now: datetime) -> None:
    """The same rows as :func:`_write_postgresql` through the ORM (SQLite, the demo's database)."""
    first: dict[uuid.UUID, ServedRecord] = {}
    for r in records:
        first.setdefault(uuid.UUID(r.request_id), r)
    stored: set[uuid.UUID] = set()
    for chunk in _chunks(list(first)):
        stored.update(ServedList.objects.filter(request_id__in=chunk).values_list("request_id", flat=True))
    new = {rid: r for rid, r in first.items() if rid not in stored}
    if not new:
        return
    ServedList.objects.bulk_create(
        [
            ServedList(
                request_id=rid, served_at=r.served_at, endpoint=r.endpoint, user_external_id=r.user_id[:128],
                variant=r.variant, policy=r.policy, model_version=r.model_version, fallback=r.fallback[:100],
                items=list(r.item_pks), segments=r.segments,
            )
            for rid, r in new.items()
        ],
        batch_size=500,
    )
    external = sorted({r.user_id[:128] for r in new.values()})
    ShopUser.objects.bulk_create(
        [ShopUser(external_id=u, created_at=now) for u in external], ignore_conflicts=True, batch_size=500
    )
    users: dict[str, int] = {}
    for chunk in _chunks(external):
        users.update(ShopUser.objects.filter(external_id__in=chunk).values_list("external_id", "id"))
    live: set[int] = set()
    for chunk in _chunks(sorted({pk for r in new.values() for pk in r.item_pks})):
        live.update(Item.objects.filter(pk__in=chunk).values_list("pk", flat=True))
    Event.objects.bulk_create(
        [
            Event(
                user_id=users[r.user_id[:128]], item_id=pk, event_type=EventType.IMPRESSION, value=float(pos),
                query="", request_id=rid, timestamp=r.served_at, ingested_at=now,
            )
            for rid, r in new.items()
            for pos, pk in enumerate(r.item_pks, start=1)
            if pk in live
        ],
        batch_size=500,
    )
    added = sum(1 for r in new.values() for pk in r.item_pks if pk in live)
    if added:
        ImpressionBatch.objects.create(ingested_at=now, events=added)


def _chunks(values: list, size: int = 500):
    for start in range(0, len(values), size):
        yield values[start : start + size]


def pending() -> int:
    return _get_queue().qsize()


def reset() -> None:
    """Empty the queue and counters (tests)."""
    global _queue
    _queue = None
    for key in stats:
        stats[key] = 0
