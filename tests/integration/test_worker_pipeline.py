"""Background work through a real Celery worker and the Redis broker: embed, train, gate, crash."""
from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from recommender.demo.synthetic import generate_shop
from recommender.features.embeddings import dirty_items
from recommender.ingestion.events import do_write_events
from recommender.ingestion.items import do_write_items
from recommender.ingestion.validation import validate_events, validate_items
from recommender.ml.evaluate import CALIBRATION_TOL
from recommender.models import Item, ItemEmbedding, ModelVersion, TrainingRun, UserSegment
from recommender.tasks import embed_items, train_model
from recommender.training.pipeline import do_queue_training, do_train

from tests.conftest import require_postgres, unavailable

from .worker import celery_worker, child_pids, redis_available, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST = {"dim": 32, "n_layers": 1, "n_heads": 1, "epochs": 20, "max_len": 20, "batch_size": 128}


@pytest.fixture(autouse=True)
def _real_services(settings, tmp_path):
    require_postgres()
    if not redis_available():
        unavailable("needs Redis on 127.0.0.1:6379 (the Celery broker of these tests)")
    settings.RECOMMENDER = {**settings.RECOMMENDER, "ARTIFACT_DIR": str(tmp_path / "artifacts")}


def seed_small_shop(n_items: int = 200, n_users: int = 150, weeks: int = 6) -> None:
    shop = generate_shop(n_items=n_items, n_users=n_users, weeks=weeks, seed=3,
                         now=datetime.now(timezone.utc))
    items, errors = validate_items(shop.items)
    assert not errors
    do_write_items(items)
    events = [e for e in shop.events if e["event_type"] != "impression"]
    for start in range(0, len(events), 10_000):
        clean, errors = validate_events(events[start : start + 10_000])
        assert not errors
        do_write_events(clean)


def test_worker_embeds_items_then_trains_and_activates_a_model(tmp_path):
    # given a small shop with no embeddings and no model
    seed_small_shop()
    assert dirty_items().count() == Item.objects.filter(is_placeholder=False).count() > 0
    log = tmp_path / "worker.log"
    with celery_worker(tmp_path / "artifacts", log):
        # when the worker is asked to embed, only through the broker
        embed_items.delay()
        wait_for(lambda: dirty_items().count() == 0, 240, "all items embedded", log)
        assert ItemEmbedding.objects.count() == Item.objects.filter(is_placeholder=False).count()
        vec = np.frombuffer(bytes(ItemEmbedding.objects.first().vector), dtype=np.float32)
        assert vec.shape == (384,) and abs(np.linalg.norm(vec) - 1) < 1e-3

        # and a training run of the main model is queued (forced: on 150 synthetic users a
        # popularity list can beat it, which the quality-gate test below covers)
        run = do_queue_training("test", params=FAST, force=True)
        train_model.delay(run.pk)
        run = wait_for(lambda: TrainingRun.objects.filter(pk=run.pk, status__in=["succeeded", "rejected", "failed"]).first(), 600, "training to finish", log)

    # then the run succeeded, with progress and a log, and its version is active
    assert run.status == "succeeded", run.log + run.error
    assert run.progress == 1.0 and "validate: NDCG@10" in run.log
    version = run.model_version
    assert version.is_active and version.status == "ready"
    assert set(version.metrics["validation"]) >= {"NDCG@10", "Recall@20", "APLT@10", "ColdHit@20"}
    assert version.metrics["validation"]["NDCG@10"] > 0
    path = Path(version.artifact_path)
    for name in ("item_vectors.npy", "user_vectors.npy", "item_pks.npy", "user_pks.npy", "meta.json", "model/params.json"):
        assert (path / name).exists(), name
    assert not list(path.rglob("*.pkl")) and not list(path.rglob("*.pickle"))
    items = np.load(path / "item_vectors.npy")
    assert items.shape[0] == Item.objects.live().count()
    # and shoppers were clustered into described interest segments
    segments = list(version.segments.all())
    assert len(segments) >= 2 and all(s.size > 0 and s.top_terms for s in segments)
    assert sum(s.size for s in segments) == UserSegment.objects.filter(model_version=version).count()
    assert version.metrics["cleaning"]["n_input"] >= version.metrics["cleaning"]["n_output"] > 0
    assert version.metrics["behaviour"]["event_types"]["purchase"] > 0
    # and the new-product boost (not set in the run's params) was chosen for this shop on the
    # validation fit, and the refit used it
    from recommender.ml.hybrid import HybridSequentialModel

    chosen = version.metrics["calibration"]["chosen"]["new_item_boost"]
    assert chosen in HybridSequentialModel.calibration_grid["new_item_boost"]
    assert version.params["new_item_boost"] == chosen and f"new_item_boost={chosen}" in run.log
    tried = version.metrics["calibration"]["tried"]
    assert len(tried) == len(HybridSequentialModel.calibration_grid["new_item_boost"])
    best = max(t["NDCG@10"] for t in tried)  # kept unless another value is more than tol better
    assert best * (1 - CALIBRATION_TOL) - 1e-6 <= version.metrics["validation"]["NDCG@10"] <= best + 1e-6


def test_a_shop_without_new_items_trains_and_keeps_its_undefined_metrics_as_null():
    # given a shop whose every item sold before the validation window: no new items there,
    # so ColdHit@20 is undefined (NaN), which PostgreSQL's jsonb cannot hold
    now = datetime.now(timezone.utc)
    do_write_items(validate_items([{"item_id": f"i{i}", "title": f"Item {i}"} for i in range(12)])[0])
    events = [
        {"user_id": f"u{u}", "item_id": f"i{(u + step) % 12}", "event_type": "purchase",
         "timestamp": (now - timedelta(days=days)).isoformat()}
        for u in range(40) for step, days in enumerate((90, 60, 10, 3))
    ]
    clean, errors = validate_events(events)
    assert not errors
    do_write_events(clean)
    # when a model is trained
    run = do_train(do_queue_training("test", params={"kind": "most-popular"}, force=True).pk)
    # then it succeeds, and the undefined metric is stored as null beside the defined ones
    assert run.status == "succeeded", run.log + run.error
    val = run.model_version.metrics["validation"]
    assert val["ColdHit@20"] is None and val["NDCG@10"] > 0


def test_a_run_that_fails_after_writing_its_artifact_leaves_no_folder(monkeypatch, tmp_path):
    from recommender.training import pipeline

    seed_small_shop(n_items=60, n_users=30, weeks=4)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    # given a step after the artifact write that fails
    monkeypatch.setattr(pipeline, "_fit_segments", broken)
    run = do_queue_training("test", params={"kind": "most-popular"}, force=True)
    with pytest.raises(RuntimeError, match="disk full"):
        do_train(run.pk)
    # then the run failed, saying why, and no artifact folder (nor a temporary one) is left
    run.refresh_from_db()
    assert run.status == "failed" and "disk full" in run.error
    assert "writing artifact" in run.log
    assert not ModelVersion.objects.exists()
    artifacts = tmp_path / "artifacts"
    assert not artifacts.exists() or not list(artifacts.iterdir())


def test_two_trainings_never_run_at_once():
    import psycopg

    from recommender.training.locks import TRAINING_LOCK_ID, LockBusy
    from .worker import database_url

    run = do_queue_training("test", params={"kind": "most-popular"})
    # given another process holding the training lock
    with psycopg.connect(database_url(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [TRAINING_LOCK_ID])
        # then a second training refuses to start and leaves its run queued
        with pytest.raises(LockBusy):
            do_train(run.pk)
    run.refresh_from_db()
    assert run.status == "queued" and run.attempts == 0


def test_re_embedding_touches_only_changed_items():
    from recommender.training.embed import do_embed_items

    seed_small_shop(n_items=60, n_users=30, weeks=2)
    first = do_embed_items()
    assert first.embedded == Item.objects.filter(is_placeholder=False).count() and first.remaining == 0
    before = dict(ItemEmbedding.objects.values_list("item_id", "updated_at"))
    # when two items change their title and one only its stock flag
    changed = list(Item.objects.order_by("pk")[:2])
    from recommender.ingestion import do_upsert_items

    do_upsert_items([{"item_id": i.external_id, "title": i.title + " deluxe", "category": i.category,
                      "brand": i.brand, "description": i.description,
                      "price": None if i.price is None else str(i.price)} for i in changed])
    assert dirty_items().count() == 2
    second = do_embed_items()
    assert second.embedded == 2
    after = dict(ItemEmbedding.objects.values_list("item_id", "updated_at"))
    assert {pk for pk in after if after[pk] != before[pk]} == {i.pk for i in changed}


def test_quality_gate_refuses_a_worse_model_and_keeps_the_active_one():
    from recommender.training.embed import do_embed_items

    seed_small_shop()
    do_embed_items()
    good = do_train(do_queue_training("test", params={"kind": "ease"}).pk)
    assert good.status == "succeeded", good.log + good.error
    # when a clearly worse model (popularity only) is trained next
    worse = do_train(do_queue_training("test", params={"kind": "most-popular"}).pk)
    # then the gate refuses it and the good version stays active
    assert worse.status == "rejected", worse.log
    assert "below the active version" in worse.log
    assert ModelVersion.objects.get(is_active=True) == good.model_version
    assert worse.model_version.status == "rejected" and not worse.model_version.is_active
    # forcing activates it anyway
    forced = do_train(do_queue_training("test", params={"kind": "most-popular"}, force=True).pk)
    assert forced.status == "succeeded" and ModelVersion.objects.get(is_active=True) == forced.model_version


def test_a_killed_worker_leaves_the_active_model_and_the_task_is_retried(tmp_path):
    from recommender.training.embed import do_embed_items

    seed_small_shop()
    do_embed_items()
    old = do_train(do_queue_training("test", params={"kind": "most-popular"}).pk).model_version
    assert old.is_active
    run = do_queue_training("test", params={**FAST, "epochs": 6})
    log = tmp_path / "worker.log"
    with celery_worker(tmp_path / "artifacts", log) as worker:
        train_model.delay(run.pk)
        wait_for(lambda: TrainingRun.objects.filter(pk=run.pk, stage__in=["validate", "fit"]).exists(), 240, "training to start", log)
        # when the process running the task is killed outright
        for pid in child_pids(worker.pid):
            os.kill(pid, 9)
        time.sleep(1)
        # then the active model is untouched and no half-written version serves
        assert ModelVersion.objects.get(is_active=True) == old
        # and the task is retried and finishes
        run = wait_for(lambda: TrainingRun.objects.filter(pk=run.pk, status__in=["succeeded", "rejected", "failed"]).first(), 600, "the retried training to finish", log)
    assert run.attempts >= 2, run.log
    assert "attempt 2" in run.log
    assert run.status in ("succeeded", "rejected"), run.log + run.error
    assert ModelVersion.objects.filter(is_active=True).count() == 1
