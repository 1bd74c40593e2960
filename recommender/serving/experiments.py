"""Starting, stopping and ending A/B experiments: each a ``do_*`` write in one transaction.

Serving follows within ``SERVING_POLICY_CHECK_SECONDS``: every change here saves rows through
``save()`` or sets ``updated_at`` explicitly, which moves the serving processes' change key.
"""
from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import ABVariant, Experiment, ExposurePolicy, ModelVersion

#: A rounding allowance when adding shares typed in the admin (0.1 + 0.2 + 0.7).
_SHARE_SLACK = 1e-9


class ExperimentError(ValueError):
    """An experiment action that cannot be done as asked; the message says what to change."""


def _locked(experiment_id: int) -> Experiment:
    try:
        return Experiment.objects.select_for_update().get(pk=experiment_id)
    except Experiment.DoesNotExist:
        raise ExperimentError(f"There is no experiment {experiment_id}; it may have been deleted.") from None


def check_startable(experiment: Experiment) -> list[str]:
    """Every reason ``experiment`` cannot start now (empty: it can)."""
    problems = []
    if experiment.status != Experiment.Status.DRAFT:
        problems.append(
            f"'{experiment.name}' is {experiment.status}; only a draft can start. "
            "To run it again, create a new experiment with new variant names."
        )
    serving = [v for v in experiment.variants.all() if v.is_active and v.share > 0]
    if len(serving) < 2:
        problems.append(
            f"'{experiment.name}' needs at least two active variants with a share above 0 (it has {len(serving)}); "
            "add them on the experiment's admin page."
        )
    controls = [v for v in serving if v.is_control]
    if not controls:
        problems.append("Mark one active variant as the control (the baseline the others are compared with).")
    total = sum(v.share for v in serving)
    if total > 1 + _SHARE_SLACK:
        problems.append(
            f"The variants' shares add up to {total:.3g}; they must total at most 1 "
            "(users left over are not in the experiment and get the default policy)."
        )
    running = Experiment.objects.filter(status=Experiment.Status.RUNNING).exclude(pk=experiment.pk).first()
    if running is not None:
        problems.append(f"'{running.name}' is running; stop it before starting '{experiment.name}'.")
    return problems


def do_start_experiment(experiment_id: int, *, now: datetime | None = None) -> Experiment:
    """Start a draft: from now on only its variants serve, users hashed with the experiment's own salt."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            experiment = _locked(experiment_id)
            problems = check_startable(experiment)
            if problems:
                raise ExperimentError(" ".join(problems))
            experiment.status = Experiment.Status.RUNNING
            experiment.started_at = now
            experiment.save(update_fields=["status", "started_at", "updated_at"])
    except IntegrityError:  # another experiment started between the check and the write
        running = Experiment.objects.filter(status=Experiment.Status.RUNNING).values_list("name", flat=True).first()
        raise ExperimentError(f"'{running}' is running; stop it first.") from None
    return experiment


def do_stop_experiment(experiment_id: int, *, now: datetime | None = None) -> Experiment:
    """Stop a running experiment: its variants stop serving; its counts stay for the report."""
    now = now or timezone.now()
    with transaction.atomic():
        experiment = _locked(experiment_id)
        if experiment.status != Experiment.Status.RUNNING:
            raise ExperimentError(f"'{experiment.name}' is {experiment.status}; only a running experiment can stop.")
        experiment.status = Experiment.Status.STOPPED
        experiment.stopped_at = now
        experiment.save(update_fields=["status", "stopped_at", "updated_at"])
    return experiment


def do_promote_winner(experiment_id: int, variant_id: int, *, now: datetime | None = None) -> str:
    """End the experiment with ``variant`` as the winner: its policy becomes the default, its model version active.

    Stops the experiment first if it runs; all in one transaction. Returns what was done, in words.
    """
    from ..training.pipeline import do_activate

    now = now or timezone.now()
    with transaction.atomic():
        experiment = _locked(experiment_id)
        variant = ABVariant.objects.select_related("policy", "model_version").filter(
            pk=variant_id, experiment=experiment
        ).first()
        if variant is None:
            raise ExperimentError(f"Variant {variant_id} is not part of '{experiment.name}'; pick one of its variants.")
        if experiment.status == Experiment.Status.DRAFT:
            raise ExperimentError(f"'{experiment.name}' never ran; start it and let it collect data before promoting.")
        if experiment.winner_id is not None:
            raise ExperimentError(f"'{experiment.name}' already promoted its winner; create a new experiment to change it.")
        version: ModelVersion | None = variant.model_version
        if version is not None and version.status not in (ModelVersion.Status.READY, ModelVersion.Status.REJECTED):
            raise ExperimentError(
                f"The winner's model version {version.name} is {version.status} and cannot serve; "
                "pick another winner or fix the version first."
            )
        done = []
        if experiment.status == Experiment.Status.RUNNING:
            experiment.status = Experiment.Status.STOPPED
            experiment.stopped_at = now
            done.append("stopped")
        experiment.winner = variant
        experiment.save(update_fields=["status", "stopped_at", "winner", "updated_at"])
        policy = variant.policy
        if not policy.is_default:
            # update() skips auto_now: set updated_at so serving sees the change.
            ExposurePolicy.objects.filter(is_default=True).update(is_default=False, updated_at=now)
            policy.is_default = True
            policy.save(update_fields=["is_default", "updated_at"])
        message = f"Promoted '{variant.name}' in '{experiment.name}'"
        message += f" ({' and '.join(done)})" if done else ""
        message += f": policy '{policy.name}' is now the default policy"
        if version is not None:
            do_activate(version)
            message += f", and model version {version.name} is now the active model"
        return message + "."
