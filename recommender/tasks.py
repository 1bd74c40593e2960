"""Celery tasks: thin entry points that take ids or plain values and call one service.

Every task is safe to run twice. Heavy models load once per worker process, never at import.
"""
from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(name="recommender.embed_items", acks_late=True, expires=3600, ignore_result=True)
def embed_items(max_items: int = 5_000) -> dict:
    """Embed up to ``max_items`` new or changed items; queues itself again while more remain."""
    from .training.embed import do_embed_items

    result = do_embed_items(max_items=max_items)
    if result.remaining and result.embedded:
        embed_items.apply_async(kwargs={"max_items": max_items}, countdown=1)
    return {"embedded": result.embedded, "remaining": result.remaining}


@shared_task(
    name="recommender.train_model",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=30,
    ignore_result=True,
)
def train_model(self, run_id: int) -> str:
    """Run one TrainingRun; if another training holds the lock, retry in a minute."""
    from .models import TrainingRun
    from .training.locks import LockBusy
    from .training.pipeline import do_train

    TrainingRun.objects.filter(pk=run_id, task_id="").update(task_id=self.request.id or "")
    try:
        run = do_train(run_id)
    except LockBusy as exc:
        raise self.retry(exc=exc, countdown=60) from None
    return run.status


@shared_task(name="recommender.scheduled_retrain", ignore_result=True)
def scheduled_retrain() -> int:
    """Beat entry point: queue a training run (its schedule is editable in the admin)."""
    from .training.pipeline import do_queue_training

    run = do_queue_training("schedule")
    train_model.delay(run.pk)
    return run.pk


def queue_embedding_after_commit() -> None:
    """Ask a worker to embed new items once the current transaction commits; never fail the caller."""
    from django.db import transaction

    def send() -> None:
        try:
            embed_items.apply_async(retry=False)
        except Exception:  # the beat sweep catches up; ingestion must not fail because a broker is down
            log.warning("could not queue embed_items; the periodic sweep will pick the items up", exc_info=True)

    transaction.on_commit(send)


@shared_task(name="recommender.aggregate_reports", acks_late=True, expires=900, ignore_result=True)
def aggregate_reports(max_days: int = 400) -> dict:
    """Beat entry point: refill late-touched days, fill days not yet filled, refresh today's partial day."""
    from django.utils import timezone

    from .reports.aggregation import do_aggregate_pending

    result = do_aggregate_pending(timezone.now(), max_days=max_days)
    if result.remaining:  # a long backlog (first run over old history) continues in bounded steps
        aggregate_reports.apply_async(kwargs={"max_days": max_days}, countdown=1)
    return {"filled": len(result.filled), "reopened": len(result.reopened), "remaining": result.remaining}


@shared_task(name="recommender.sweep_orphan_events", acks_late=True, expires=3600, ignore_result=True)
def sweep_orphan_events() -> dict:
    """Beat entry point: delete recent events whose shopper or item was deleted while they were written."""
    from .ingestion.events import do_sweep_orphan_events

    return {"deleted": do_sweep_orphan_events()}
