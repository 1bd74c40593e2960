"""Train, evaluate, version and (if it passes the quality gate) activate a model.

A run snapshots the behaviour log, fits the configured model on all but the last
``VALIDATION_DAYS`` and evaluates it there against a popularity baseline and the active
version, refits on everything, writes a versioned artifact folder (no pickle) and a
ModelVersion row, and activates it in one transaction only if it passes the gate.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from ..conf import settings as rec_settings
from ..features.snapshot import Snapshot, load_snapshot
from ..ml import analysis, evaluate, processing, protocol, segments
from ..ml.base import Recommender
from ..ml.projection import identity_projection, save_projection
from ..models import InterestSegment, ModelVersion, TrainingRun, UserSegment
from .locks import LockBusy, training_lock  # noqa: F401  (LockBusy is part of this API)

log = logging.getLogger(__name__)

#: Model kinds the pipeline can train; the first is the default.
MODEL_KINDS = ("hybrid-transformer", "most-popular", "ease")
ARTIFACT_FILES = ("item_vectors.npy", "user_vectors.npy", "item_pks.npy", "user_pks.npy", "meta.json")


class TrainingError(Exception):
    """A run could not produce a model; the message says why and what to do."""


def make_model(kind: str, random_state: int, params: dict[str, Any]) -> Recommender:
    if kind == "hybrid-transformer":
        from ..ml.hybrid import HybridSequentialModel

        return HybridSequentialModel(random_state=random_state, **params)
    if kind == "most-popular":
        from ..ml.baselines import MostPopular

        return MostPopular(random_state=random_state, **params)
    if kind == "ease":
        from ..ml.baselines import EASE

        return EASE(random_state=random_state, **params)
    raise TrainingError(f"Unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}.")


class RunReporter:
    """Writes progress, stage and log lines of a TrainingRun so the admin shows them live."""

    def __init__(self, run: TrainingRun) -> None:
        self.run = run
        self.started = time.perf_counter()

    def __call__(self, stage: str, progress: float, message: str = "") -> None:
        line = f"[{time.perf_counter() - self.started:7.1f}s] {stage}: {message}".rstrip(": ")
        log.info("training run %s: %s", self.run.pk, line)
        self.run.stage, self.run.progress = stage, round(progress, 3)
        self.run.log = (self.run.log + line + "\n")[-50_000:]
        self.run.heartbeat_at = timezone.now()
        TrainingRun.objects.filter(pk=self.run.pk).update(
            stage=self.run.stage, progress=self.run.progress, log=self.run.log, heartbeat_at=self.run.heartbeat_at
        )


def _write_artifact(path: Path, model: Recommender, snap: Snapshot, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Everything serving needs, as .npy/.json in ``path`` (written to a temp folder, then renamed)."""
    tmp = path.with_name(f".tmp-{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model")
    projection = None  # how serving places items newer than this version (by their text)
    if hasattr(model, "item_vectors"):
        item_vecs = np.asarray(model.item_vectors(), dtype=np.float32)
        user_vecs = np.asarray(model.user_vectors(), dtype=np.float32)
        if hasattr(model, "text_projection"):
            projection = model.text_projection()
    else:  # models without an embedding space: serve from text vectors and popularity
        text = snap.interactions.item_text
        item_vecs = text if text is not None else np.zeros((snap.interactions.n_items, 1), np.float32)
        user_vecs = np.zeros((snap.interactions.n_users, item_vecs.shape[1]), np.float32)
        if text is not None:
            projection = identity_projection(text.shape[1])
    if projection is not None:
        save_projection(tmp / "text_projection", projection)
    arrays = {
        "item_vectors": item_vecs,
        "user_vectors": user_vecs,
        "item_pks": snap.catalog.pks,
        "user_pks": snap.user_pks,
    }
    for name, arr in arrays.items():
        np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
    if hasattr(model, "similarity_mask"):
        np.save(tmp / "similarity_mask.npy", np.asarray(model.similarity_mask(), dtype=np.float32), allow_pickle=False)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return arrays


def _fit_segments(user_vectors: np.ndarray, data, snap: Snapshot, seed: int):
    """K-means interest segments over the users that have any interest signal, or None if too few."""
    if not np.any(user_vectors):  # a model without a user space: describe users by their items' text
        if data.item_text is None:
            return None
        user_vectors = segments.user_interest_vectors(data, data.item_text, now=snap.until)
    active = np.flatnonzero((np.bincount(data.user, minlength=data.n_users) > 0) & np.any(user_vectors != 0, axis=1))
    if len(active) < 20:
        return None
    k = rec_settings.SEGMENTS or None
    k = min(k, max(2, len(active) // 10)) if k else None
    return segments.fit_segments(
        user_vectors[active], data, users=active, k=k, titles=snap.catalog.titles,
        categories=snap.catalog.categories, random_state=seed,
    )


def _save_segments(version: ModelVersion, segs, snap: Snapshot) -> None:
    InterestSegment.objects.bulk_create(
        [InterestSegment(model_version=version, **{k: v for k, v in s.as_dict().items() if k in _SEGMENT_FIELDS}) for s in segs.segments]
    )
    rows = [
        UserSegment(model_version=version, user_id=int(snap.user_pks[u]), segment=int(label))
        for u, label in zip(segs.users.tolist(), segs.labels.tolist())
        if label >= 0
    ]
    UserSegment.objects.bulk_create(rows, batch_size=5000)


_SEGMENT_FIELDS = {"index", "size", "label", "top_items", "top_categories", "top_terms"}


def passes_gate(candidate: dict[str, float], baseline: dict[str, float], active: ModelVersion | None) -> tuple[bool, str]:
    """The candidate must beat popularity on validation and not fall far below the active version."""
    tol = rec_settings.QUALITY_GATE_TOLERANCE
    ndcg = candidate.get("NDCG@10", 0.0)
    base = baseline.get("NDCG@10", 0.0)
    if ndcg < base * (1 - tol):
        return False, f"validation NDCG@10 {ndcg:.4f} is below the popularity baseline's {base:.4f}"
    if active is not None:
        ref = (active.metrics or {}).get("validation", {}).get("NDCG@10")
        if ref is not None and ndcg < ref * (1 - tol):
            return False, (
                f"validation NDCG@10 {ndcg:.4f} is more than {tol:.0%} below the active version "
                f"{active.name}'s {ref:.4f}"
            )
    return True, f"validation NDCG@10 {ndcg:.4f} (popularity {base:.4f})"


def do_activate(version: ModelVersion) -> None:
    """Make ``version`` the one active model, atomically (the old one serves until commit)."""
    with transaction.atomic():
        ModelVersion.objects.select_for_update().filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        ModelVersion.objects.filter(pk=version.pk).update(is_active=True, activated_at=timezone.now())
    version.refresh_from_db()


def do_train(run_id: int) -> TrainingRun:
    """Carry out one TrainingRun end to end. Safe to call again for the same run after a crash."""
    run = TrainingRun.objects.get(pk=run_id)
    if run.status in (TrainingRun.Status.SUCCEEDED, TrainingRun.Status.REJECTED):
        return run
    # Raises LockBusy when another run trains; the Celery task retries later.
    with training_lock():
        return _train_locked(run)


def _train_locked(run: TrainingRun) -> TrainingRun:
    report = RunReporter(run)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.RUNNING, started_at=timezone.now(), attempts=run.attempts + 1, error="",
    )
    run.refresh_from_db()
    if run.attempts > 1:
        report("restart", 0.0, f"attempt {run.attempts} (the previous attempt did not finish)")
    timings: dict[str, float] = {}
    path: Path | None = None  # the artifact folder, once written
    version: ModelVersion | None = None
    try:
        params = {**rec_settings.TRAINING_PARAMS, **(run.params or {})}
        kind = params.pop("kind", MODEL_KINDS[0])
        seed = int(params.pop("random_state", 0))
        t0 = time.perf_counter()
        until = timezone.now()
        since = until - timedelta(days=rec_settings.TRAINING_WINDOW_DAYS)
        report("snapshot", 0.05, "reading events and catalog")
        snap = load_snapshot(since=since, until=until)
        timings["snapshot_s"] = time.perf_counter() - t0
        report("snapshot", 0.08, f"{len(snap.interactions.user):,} events, {snap.interactions.n_users:,} users, "
               f"{snap.interactions.n_items:,} items")
        t0 = time.perf_counter()
        behaviour = analysis.behaviour_summary(snap.interactions, now=until)
        # Duplicates, impossible times, bot bursts and impressions (what was shown, not what
        # was wanted) are not training signal.
        data, cleaning = processing.clean_interactions(snap.interactions, now=until, drop_impressions=True)
        data = processing.weight_interactions(data, now=until, event_weights=rec_settings.EVENT_WEIGHTS)
        timings["clean_s"] = time.perf_counter() - t0
        report("clean", 0.1, f"kept {cleaning.n_output:,} of {cleaning.n_input:,} events "
               f"({cleaning.n_duplicates:,} duplicates, {cleaning.n_bot_events:,} from {cleaning.n_bot_users:,} bot-like users, "
               f"{cleaning.n_impressions:,} impressions)")
        if len(data.user) == 0:
            raise TrainingError("There are no events in the training window: ingest behaviour events first.")
        if data.item_text is None and kind == "hybrid-transformer":
            raise TrainingError("No item has a text embedding yet: run `manage.py embed_items` (or wait for the worker).")

        t0 = time.perf_counter()
        report("validate", 0.15, f"fitting {kind} on all but the last {rec_settings.VALIDATION_DAYS} days")
        try:
            split = protocol.temporal_split(data, test_days=rec_settings.VALIDATION_DAYS)
        except ValueError as exc:
            raise TrainingError(f"Cannot make a validation split: {exc}. More history is needed.") from exc
        candidate = make_model(kind, seed, params).fit(split.train)
        # Recommendation-time parameters not set explicitly are chosen for this shop on the
        # same fit (no refit), then used for the refit below.
        cal = evaluate.calibrate(candidate, split, keep=list(params),
                                 log=lambda line: report("validate", 0.5, line.strip()))
        val, params = cal.metrics, {**params, **cal.params}
        baseline = evaluate.score_split(make_model("most-popular", seed, {}).fit(split.train), split)
        timings["validation_s"] = time.perf_counter() - t0
        report("validate", 0.55, f"NDCG@10 {val.get('NDCG@10', 0):.4f} vs popularity {baseline.get('NDCG@10', 0):.4f} ({split.describe()})")

        t0 = time.perf_counter()
        report("fit", 0.6, "refitting on the whole window")
        model = make_model(kind, seed, params).fit(data)
        timings["fit_s"] = time.perf_counter() - t0

        name = f"{kind}-{until:%Y%m%d-%H%M%S}-{run.pk}"
        path = Path(rec_settings.ARTIFACT_DIR) / name
        meta = {"name": name, "kind": kind, "params": params, "random_state": seed, "data_from": since, "data_to": until,
                "n_events": int(len(data.user)), "n_users": int(data.n_users), "n_items": int(data.n_items)}
        report("write", 0.85, f"writing artifact {path}")
        t0 = time.perf_counter()
        arrays = _write_artifact(path, model, snap, meta)
        timings["write_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        report("segments", 0.9, "clustering shoppers into interest segments")
        segs = _fit_segments(arrays["user_vectors"], data, snap, seed)
        if segs is not None:
            segs.save(path / "segments")
        timings["segments_s"] = time.perf_counter() - t0
        version = ModelVersion.objects.create(
            name=name, kind=kind, status=ModelVersion.Status.READY, artifact_path=str(path),
            params={**params, "random_state": seed},
            metrics={"validation": evaluate.json_metrics(val),
                     "validation_popularity": evaluate.json_metrics(baseline),
                     "cleaning": cleaning.as_dict(), "behaviour": behaviour,
                     "calibration": {"chosen": cal.params, "tried": [
                         {**t.params, **evaluate.json_metrics({"NDCG@10": t.metrics.get("NDCG@10")})}
                         for t in cal.trials]}},
            timings=timings, data_from=since, data_to=until,
        )
        if segs is not None:
            _save_segments(version, segs, snap)
            report("segments", 0.95, f"{segs.k} segments: " + "; ".join(f"{s.label} ({s.size})" for s in segs.segments))
        active = ModelVersion.objects.filter(is_active=True).first()
        ok, why = passes_gate(val, baseline, active)
        if ok or run.force_activate:
            do_activate(version)
            status = TrainingRun.Status.SUCCEEDED
            report("activate", 1.0, f"activated {name}: {why}{' (forced)' if not ok else ''}")
        else:
            ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.REJECTED)
            status = TrainingRun.Status.REJECTED
            report("gate", 1.0, f"not activated: {why}; the active version stays")
        TrainingRun.objects.filter(pk=run.pk).update(status=status, model_version=version, finished_at=timezone.now(), progress=1.0)
    except Exception as exc:
        if path is not None and version is None:
            # No version row names it: neither the folder nor a half-written one stays.
            shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(path.with_name(f".tmp-{path.name}"), ignore_errors=True)
        message = str(exc) if isinstance(exc, TrainingError) else f"{type(exc).__name__}: {exc}"
        report("failed", run.progress, message)
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.FAILED, error=message + ("" if isinstance(exc, TrainingError) else "\n" + traceback.format_exc()),
            finished_at=timezone.now(),
        )
        if not isinstance(exc, TrainingError):
            raise
    run.refresh_from_db()
    return run


def do_queue_training(trigger: str = "manual", *, force: bool = False, params: dict | None = None) -> TrainingRun:
    """Create a TrainingRun row; the caller hands its id to the Celery task or runs it inline."""
    return TrainingRun.objects.create(trigger=trigger, force_activate=force, params=params or {})
