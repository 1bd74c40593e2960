"""The A/B experiments pages: the list of experiments, and per experiment its variants' figures and buttons.

Reads come from :mod:`recommender.reports.experiments` (count tables only). The buttons POST
(CSRF, staff with the change permission) to the experiment's own URL, call one ``do_*`` write
of :mod:`recommender.serving.experiments` each, and redirect back with a message.
"""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone

from ..models import ABVariant, Experiment
from ..reports.experiments import RATES, experiment_report, suggested_winner
from ..serving.experiments import (
    ExperimentError, check_startable, do_promote_winner, do_start_experiment, do_stop_experiment,
)
from .base import Table, render_page, staff_page
from .charts import Interval, interval_chart

MAX_EXPERIMENTS = 100


@staff_page
def experiments_page(request: HttpRequest) -> HttpResponse:
    """Every experiment, newest first, with its status, dates, variants and winner."""
    experiments = list(
        Experiment.objects.select_related("winner").prefetch_related("variants")[:MAX_EXPERIMENTS]
    )
    rows = []
    for e in experiments:
        variants = sorted(e.variants.all(), key=lambda v: (not v.is_control, v.name))
        rows.append({
            "name": e.name, "url": reverse("rec-admin:experiment", args=[e.pk]), "status": e.status,
            "started_at": e.started_at, "stopped_at": e.stopped_at,
            "variants": ", ".join(f"{v.name}{' (control)' if v.is_control else ''} {v.share:.0%}" for v in variants),
            "winner": e.winner.name if e.winner else "",
        })
    table = Table(
        "experiments",
        [("name", "experiment"), ("status", "status"), ("started_at", "started"), ("stopped_at", "stopped"),
         ("variants", "variants and traffic shares"), ("winner", "winner")],
        rows, title="Experiments",
    )
    return render_page(
        request, "recommender/admin/experiments.html", "A/B experiments", [table],
        experiments=rows, add_url=reverse("admin:recommender_experiment_add"),
        running=next((r for r in rows if r["status"] == Experiment.Status.RUNNING), None),
    )


def _act(request: HttpRequest, experiment: Experiment) -> str:
    """Carry out the posted button; returns the message to show (raises ExperimentError when refused)."""
    action = request.POST.get("action", "")
    if action == "start":
        do_start_experiment(experiment.pk)
        return f"Started '{experiment.name}': its variants serve within seconds; users are hashed afresh for it."
    if action == "stop":
        do_stop_experiment(experiment.pk)
        return (f"Stopped '{experiment.name}': its variants no longer serve. "
                "Promote a winner to make its policy the default.")
    if action == "promote":
        raw = request.POST.get("variant", "")
        if not raw.isdigit():
            raise ExperimentError("Pick the variant to promote.")
        return do_promote_winner(experiment.pk, int(raw))
    raise ExperimentError(f"Unknown action {action!r}; use start, stop or promote.")


@staff_page
def experiment_page(request: HttpRequest, pk: int) -> HttpResponse:
    """One experiment: per variant users, impressions, tail share, rates with 95% CIs, tests against control."""
    experiment = get_object_or_404(Experiment.objects.select_related("winner"), pk=pk)
    if request.method == "POST":
        if not request.user.has_perm("recommender.change_experiment"):
            messages.error(request, "You need the 'Can change experiment' permission to start, stop or promote.")
        else:
            try:
                messages.success(request, _act(request, experiment))
            except ExperimentError as exc:
                messages.error(request, str(exc))
        return HttpResponseRedirect(request.path)

    report = experiment_report(experiment, timezone.now().date())
    variants = Table(
        "variants",
        [("variant", "variant"), ("role", "role"), ("policy", "policy"), ("model_version", "model version"),
         ("share", "traffic share"), ("users", "exposed users"), ("impressions", "impressions"),
         ("tail_share_of_impressions", "tail share of impressions"),
         ("clicks_per_impression", "clicks per impression"), ("clicks_per_impression_low", "95% CI low"),
         ("clicks_per_impression_high", "95% CI high")],
        report.variants, title="Exposure per variant",
        caption="Impressions, their tail share and clicks per impression of the recommended lists each variant served; "
        "exposed users got at least one of its lists.",
    )
    variants.formats = {
        "share": "percent", "tail_share_of_impressions": "percent", "clicks_per_impression": "percent",
        "clicks_per_impression_low": "percent", "clicks_per_impression_high": "percent", "users": "number",
        "impressions": "number",
    }
    revenue = Table(
        "revenue",
        [("variant", "variant"), ("users", "exposed users"), ("revenue", "revenue"),
         ("revenue_per_user", "revenue per user"), ("revenue_per_user_low", "95% CI low"),
         ("revenue_per_user_high", "95% CI high"), ("revenue_lift", "vs control"), ("revenue_p_value", "p-value"),
         ("revenue_verdict", "verdict")],
        report.variants, title="Revenue per exposed user",
        caption="Purchases of recommended items (quantity x price) per exposed user, buyers and non-buyers alike; "
        "tested against the control with Welch's test.",
    )
    revenue.formats = {
        "users": "number", "revenue": "number", "revenue_per_user": "number", "revenue_per_user_low": "number",
        "revenue_per_user_high": "number", "revenue_lift": "percent",
    }
    rates = Table(
        "rates",
        [("variant", "variant"), ("metric_label", "metric"), ("users_who", "users who did"), ("users", "exposed users"),
         ("rate", "rate"), ("low", "95% CI low"), ("high", "95% CI high"), ("lift", "lift vs control"),
         ("lift_low", "lift CI low"), ("lift_high", "lift CI high"), ("p_value", "p-value"), ("verdict", "verdict")],
        report.rates, title="Rates per exposed user, against the control",
        caption="Shares of exposed users who clicked, added to cart or bought a recommended item at least once, "
        "with Wilson 95% intervals; lift is relative to the control, tested by a two-sided two-proportion z-test. "
        "Users are the unit because they are what is hashed into variants. Looking every day and stopping at the "
        "first p < 0.05 inflates false wins: decide the run length before starting.",
    )
    rates.formats = {
        "rate": "percent", "low": "percent", "high": "percent", "lift": "percent", "lift_low": "percent",
        "lift_high": "percent", "users_who": "number", "users": "number",
    }
    labels = dict(RATES)
    chart = interval_chart(
        "rates-chart", "Rates per exposed user with 95% confidence intervals",
        [Interval(labels[r["metric"]], r["variant"], r["rate"], r["low"], r["high"]) for r in report.rates],
        value_format="percent", value_label="rate",
        note="Whiskers are Wilson 95% intervals; overlapping whiskers do not by themselves mean no difference "
        "(see the p-values).",
    )
    suggested = suggested_winner(report)
    context: dict[str, Any] = {
        "experiment": experiment, "report": report, "chart": chart, "suggested": suggested,
        "can_start_problems": check_startable(experiment) if experiment.status == Experiment.Status.DRAFT else [],
        "change_url": reverse("admin:recommender_experiment_change", args=[experiment.pk]),
        "list_url": reverse("rec-admin:experiments"),
        "variant_choices": list(ABVariant.objects.filter(experiment=experiment).order_by("-is_control", "name")),
    }
    return render_page(
        request, "recommender/admin/experiment.html", f"Experiment: {experiment.name}",
        [rates, variants, revenue, chart.table], **context,
    )
