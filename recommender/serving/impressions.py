"""Impression logging off the request path: a bounded in-process queue drained by one thread.

Why not a Celery task per request: sending costs a broker round trip on the hot path (and a
connect timeout when the broker is down), and one task per list means one insert per list.
Here a request only appends to a ``queue.Queue`` (microseconds); a daemon thread per
process writes everything queued every ``IMPRESSION_FLUSH_SECONDS`` as one batch through
the ingestion service (users created as needed, one insert; the ``event_id``
``imp:<request_id>:<position>`` makes a re-written batch harmless). The trade-off: a
killed process loses at most one flush interval of impressions, and a full queue drops
lists (counted in :data:`stats`) instead of slowing requests down. Nothing here ever
raises into a request.
"""
from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import close_old_connections, transaction

from ..conf import settings as rec_settings
from ..models import EventType, ServedList

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


def _run() -> None:
    interval = rec_settings.IMPRESSION_FLUSH_SECONDS
    stop = threading.Event()
    while not stop.wait(interval):
        try:
            close_old_connections()
            flush()
        except Exception:  # the loop must survive anything; flush() already logged
            log.exception("impression flusher")


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
    """Write served lists and one IMPRESSION event per listed item, in one transaction; idempotent."""
    from ..ingestion.events import do_write_events
    from ..ingestion.validation import CleanEvent

    events = [
        CleanEvent(
            user_id=r.user_id, item_id=item_id, event_type=int(EventType.IMPRESSION), timestamp=r.served_at,
            value=float(pos + 1), query="", request_id=uuid.UUID(r.request_id),
            event_id=f"imp:{r.request_id}:{pos}",
        )
        for r in records
        for pos, item_id in enumerate(r.item_ids)
    ]
    with transaction.atomic():
        ServedList.objects.bulk_create(
            [
                ServedList(
                    request_id=uuid.UUID(r.request_id), served_at=r.served_at, endpoint=r.endpoint,
                    user_external_id=r.user_id[:128], variant=r.variant, policy=r.policy,
                    model_version=r.model_version, fallback=r.fallback[:100], items=list(r.item_pks),
                    segments=r.segments,
                )
                for r in records
            ],
            ignore_conflicts=True,
        )
        if events:
            # Items are known; "placeholder" only matters for an item deleted since serving.
            do_write_events(events, unknown_items="placeholder")


def pending() -> int:
    return _get_queue().qsize()


def reset() -> None:
    """Empty the queue and counters (tests)."""
    global _queue
    _queue = None
    for key in stats:
        stats[key] = 0
