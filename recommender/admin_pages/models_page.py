"""The Models page: versions with their offline metrics side by side, training runs, and the buttons
to retrain now, activate a version and roll back.

The page reads; the three buttons POST (CSRF, staff only) to the same URL, call one write
function each, and redirect back with a message saying what happened or what to do instead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timezone as dt_timezone
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone

from ..models import ModelVersion, TrainingRun
from .base import Table, render_page, staff_page
from .charts import PALETTE, Chart, bar_chart, fmt_number

MAX_VERSIONS = 30
MAX_RUNS = 20
CHART_VERSIONS = 12
#: Columns shown beside each version on the page (the CSV export has every metric).
SHOWN = (("NDCG@10", "NDCG@10"), ("Recall@10", "Recall@10"), ("APLT@10", "APLT@10 (tail share)"),
         ("Coverage@10", "Coverage@10"), ("pop_ndcg", "popularity NDCG@10"), ("vs_pop", "NDCG@10 vs popularity"))

#: (key in metrics["validation"], column label, display format)
METRICS = (
    ("NDCG@10", "NDCG@10", "number"),
    ("Recall@10", "Recall@10", "number"),
    ("APLT@10", "APLT@10 (tail share)", "percent"),
    ("Coverage@10", "Coverage@10", "percent"),
    ("TailRecall@20", "TailRecall@20", "number"),
)


class ActionRefused(Exception):
    """A button the current state does not allow; the message says why and what to do instead."""


# --- reads ---------------------------------------------------------------------------------------

def _gate_line(log: str) -> str | None:
    """The quality gate's verdict from a run's log ('activate: ...' or 'gate: ...'), if it got there."""
    found = None
    for line in log.splitlines():
        m = re.search(r"\]\s+(activate|gate): (.*)$", line)
        if m:
            found = m.group(2)
    return found


def _when(t) -> str | None:
    return None if t is None else timezone.localtime(t, dt_timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def version_rows(versions: list[ModelVersion]) -> list[dict[str, Any]]:
    """One row per version: identity, state, validation metrics, the popularity baseline, the gate."""
    gate_by_version: dict[int, str] = {}
    runs = TrainingRun.objects.filter(model_version__in=versions).order_by("created_at").only("model_version_id", "log")
    for run in runs:
        line = _gate_line(run.log)
        if line:
            gate_by_version[run.model_version_id] = line
    rows = []
    for v in versions:
        metrics = v.metrics or {}
        val, pop = metrics.get("validation") or {}, metrics.get("validation_popularity") or {}
        ndcg, base = val.get("NDCG@10"), pop.get("NDCG@10")
        if v.status == ModelVersion.Status.REJECTED:
            gate = "rejected: " + gate_by_version.get(v.pk, "below the gate").removeprefix("not activated: ")
        elif v.status == ModelVersion.Status.READY:
            gate = "passed" + (f": {gate_by_version[v.pk]}" if v.pk in gate_by_version else "")
        else:
            gate = "–"
        rows.append({
            "pk": v.pk, "name": v.name, "kind": v.kind, "status": v.status, "active": "yes" if v.is_active else "",
            "is_active": v.is_active, "ready": v.status == ModelVersion.Status.READY,
            "created": _when(v.created_at), "activated": _when(v.activated_at),
            **{key: val.get(key) for key, _, _ in METRICS},
            "pop_ndcg": base,
            "vs_pop": None if ndcg is None or not base else ndcg / base - 1,
            "gate": gate,
        })
    return rows


def versions_table(rows: list[dict[str, Any]]) -> Table:
    columns = [("name", "version"), ("kind", "kind"), ("status", "status"), ("active", "active"),
               ("created", "created"), ("activated", "activated")]
    columns += [(key, label) for key, label, _ in METRICS]
    columns += [("pop_ndcg", "popularity NDCG@10"), ("vs_pop", "NDCG@10 vs popularity"), ("gate", "quality gate")]
    formats = {key: fmt for key, _, fmt in METRICS}
    formats.update({"pop_ndcg": "number", "vs_pop": "percent"})
    return Table("versions", columns, rows, title="Model versions", formats=formats,
                 caption="Validation metrics on the last VALIDATION_DAYS of behaviour (each version trained on what came before).")


def run_rows(runs: list[TrainingRun]) -> list[dict[str, Any]]:
    return [{
        "pk": r.pk, "status": r.status, "status_label": r.get_status_display(), "stage": r.stage,
        "progress": r.progress, "progress_pct": round(100 * (r.progress or 0)), "trigger": r.trigger,
        "version": r.model_version.name if r.model_version else "", "created": _when(r.created_at),
        "started": _when(r.started_at), "finished": _when(r.finished_at), "error": r.error, "log": r.log,
        "attempts": r.attempts, "live": r.status in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING),
    } for r in runs]


def runs_table(rows: list[dict[str, Any]]) -> Table:
    columns = [("pk", "run"), ("status", "status"), ("stage", "stage"), ("progress", "progress"),
               ("trigger", "trigger"), ("version", "model version"), ("created", "created"),
               ("started", "started"), ("finished", "finished"), ("error", "error"), ("log", "log")]
    return Table("runs", columns, rows, title="Training runs", formats={"progress": "percent"})


def charts(rows: list[dict[str, Any]]) -> list[Chart]:
    """NDCG@10 against each version's popularity baseline, then the tail metrics, oldest version first."""
    shown = [r for r in rows if r["NDCG@10"] is not None][:CHART_VERSIONS][::-1]
    if not shown:
        return []
    labels, values, colors = [], [], []
    for r in shown:
        labels += [r["name"], f"{r['name']} · popularity"]
        values += [r["NDCG@10"], r["pop_ndcg"]]
        colors += [PALETTE[0], PALETTE[1]]
    return [
        bar_chart("ndcg", "Validation NDCG@10: each version (blue) and the popularity baseline on the same split (orange)",
                  labels, values, value_label="NDCG@10", colors=colors),
        bar_chart("aplt", "APLT@10: share of long-tail items in the top 10", [r["name"] for r in shown],
                  [r["APLT@10"] for r in shown], value_format="percent", value_label="APLT@10",
                  colors=[PALETTE[2]] * len(shown)),
        bar_chart("coverage", "Coverage@10: share of the catalog in anybody's top 10", [r["name"] for r in shown],
                  [r["Coverage@10"] for r in shown], value_format="percent", value_label="Coverage@10",
                  colors=[PALETTE[4]] * len(shown)),
    ]


# --- writes --------------------------------------------------------------------------------------

def do_retrain_now(trigger: str = "admin") -> tuple[TrainingRun, TrainingRun | None]:
    """Queue a training run and hand it to the worker; returns (the run, a run already in progress or None)."""
    from ..tasks import train_model
    from ..training.pipeline import do_queue_training

    busy = TrainingRun.objects.filter(status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]).order_by("pk").first()
    run = do_queue_training(trigger)
    try:
        train_model.delay(run.pk)
    except Exception as exc:  # broker down: the run row says so instead of waiting forever
        TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.FAILED, error=f"could not queue: {exc}")
        raise ActionRefused(
            f"Could not queue the training run ({exc}); check that the Celery broker is reachable, then press Retrain now again."
        ) from exc
    return run, busy


def do_activate_version(version_pk: int) -> ModelVersion:
    """Activate a ready version; refuse anything else with what to do instead."""
    from ..training.pipeline import do_activate

    version = ModelVersion.objects.filter(pk=version_pk).first()
    if version is None:
        raise ActionRefused(f"No model version with id {version_pk}; it may have been deleted. Reload the page.")
    if version.is_active:
        raise ActionRefused(f"{version.name} is already the active model; nothing changed.")
    if version.status != ModelVersion.Status.READY:
        why = {
            ModelVersion.Status.TRAINING: "is still training; wait for its run to finish",
            ModelVersion.Status.FAILED: "failed to train and has no usable artifact; retrain instead",
            ModelVersion.Status.REJECTED: (
                "was rejected by the quality gate; to serve it anyway, use the 'Activate the selected version' "
                "action under Model versions"
            ),
        }.get(version.status, f"is {version.status}")
        raise ActionRefused(f"{version.name} {why}. Only ready versions can be activated here.")
    do_activate(version)
    return version


def rollback_target() -> ModelVersion | None:
    """The ready version that was active most recently before the current one."""
    return (
        ModelVersion.objects.filter(status=ModelVersion.Status.READY, is_active=False, activated_at__isnull=False)
        .order_by("-activated_at", "-pk").first()
    )


def do_roll_back() -> tuple[ModelVersion, ModelVersion | None]:
    """Activate the previously active ready version; returns (it, the version it replaced)."""
    from ..training.pipeline import do_activate

    with transaction.atomic():
        current = ModelVersion.objects.select_for_update().filter(is_active=True).first()
        target = rollback_target()
        if target is None:
            raise ActionRefused(
                "There is no earlier version to roll back to: no other ready version has ever been active. "
                "Activate a ready version with its Activate button, or retrain."
            )
        do_activate(target)
    return target, current


# --- the view ------------------------------------------------------------------------------------

@dataclass
class _Result:
    level: int
    text: str


def _act(request: HttpRequest) -> _Result:
    action = request.POST.get("action", "")
    try:
        if action == "retrain":
            run, busy = do_retrain_now()
            text = f"Queued training run {run.pk}; its progress and log show below (reload to follow it)."
            if busy is not None:
                text += f" Run {busy.pk} is {busy.status}: this one starts when it finishes (one training at a time)."
            return _Result(messages.SUCCESS, text)
        if action == "activate":
            raw = request.POST.get("version", "")
            if not raw.isdigit():
                return _Result(messages.ERROR, f"Pick a version to activate (got {raw!r}).")
            version = do_activate_version(int(raw))
            return _Result(messages.SUCCESS, f"{version.name} is now the active model; serving switches to it within seconds.")
        if action == "rollback":
            target, previous = do_roll_back()
            was = f" (was {previous.name})" if previous else ""
            return _Result(messages.SUCCESS, f"Rolled back: {target.name} is the active model again{was}; serving switches within seconds.")
    except ActionRefused as exc:
        return _Result(messages.ERROR, str(exc))
    return _Result(messages.ERROR, f"Unknown action {action!r}; use the page's buttons (retrain, activate, rollback).")


@staff_page
def models_view(request: HttpRequest) -> HttpResponse:
    """Versions and their metrics, training runs, and the three buttons."""
    if request.method == "POST":
        result = _act(request)
        messages.add_message(request, result.level, result.text)
        return HttpResponseRedirect(reverse("rec-admin:models"))
    versions = list(ModelVersion.objects.order_by("-created_at", "-pk")[:MAX_VERSIONS])
    runs = list(TrainingRun.objects.select_related("model_version").order_by("-created_at", "-pk")[:MAX_RUNS])
    vrows, rrows = version_rows(versions), run_rows(runs)
    vtable, rtable = versions_table(vrows), runs_table(rrows)
    chart_list = charts(vrows)
    active = next((r for r in vrows if r["is_active"]), None)
    if active is None:
        active_obj = ModelVersion.objects.filter(is_active=True).first()  # older than the versions shown
        active = version_rows([active_obj])[0] if active_obj else None
    return render_page(
        request, "recommender/admin/models.html", "Models",
        tables=[vtable, rtable] + [c.table for c in chart_list],
        versions=vtable, shown=SHOWN, runs=rtable,
        version_view=[(row, [(vtable.formats.get(key, ""), row.get(key)) for key, _ in SHOWN]) for row in vrows],
        run_view=list(zip(rrows, rtable.display_rows)), charts=chart_list,
        active=active, active_ndcg=fmt_number(active["NDCG@10"]) if active and active["NDCG@10"] is not None else "–",
        rollback_to=rollback_target(),
        live_runs=sum(1 for r in rrows if r["live"]),
    )
