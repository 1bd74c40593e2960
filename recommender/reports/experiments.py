"""The A/B experiment report, read from the count tables only (never raw events).

Impressions, tail share and clicks per impression come from ``DailySegmentCount``; users,
per-user rates and revenue per user from ``DailyVariantUser``. The days are the experiment's
own: from the UTC day it started to the day it stopped (today while it runs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone as dt_timezone
from typing import Any

from django.db import connection
from django.db.models import Q, Sum

from ..models import ABVariant, DailySegmentCount, DailyVariantUser, Experiment, Segment
from . import stats
from .queries import fill_state

#: (key, label) of the per-user rates: shares of exposed users who did it at least once.
RATES = (
    ("clicked", "CTR (users who clicked)"),
    ("added_to_cart", "add-to-cart rate"),
    ("purchased", "conversion rate"),
)


@dataclass
class ExperimentReport:
    experiment: Experiment
    start: date | None  # first UTC day; None if it never started
    end: date | None  # exclusive
    variants: list[dict[str, Any]] = field(default_factory=list)
    rates: list[dict[str, Any]] = field(default_factory=list)
    fill: dict[str, Any] = field(default_factory=dict)

    @property
    def control(self) -> dict[str, Any] | None:
        return next((v for v in self.variants if v["is_control"]), None)


def experiment_days(experiment: Experiment, today: date) -> tuple[date, date] | None:
    """[first, last + 1) UTC days the experiment served, or None if it never started."""
    if experiment.started_at is None:
        return None
    start = _utc_date(experiment.started_at)
    last = _utc_date(experiment.stopped_at) if experiment.stopped_at else today
    return start, max(start, last) + timedelta(days=1)


def _utc_date(moment: datetime) -> date:
    return moment.astimezone(dt_timezone.utc).date()


_USERS_SQL = """
SELECT variant, COUNT(*), SUM(CASE WHEN c > 0 THEN 1 ELSE 0 END), SUM(CASE WHEN a > 0 THEN 1 ELSE 0 END),
       SUM(CASE WHEN p > 0 THEN 1 ELSE 0 END), SUM(r), SUM(r * r)
FROM (
    SELECT variant, user_external_id, SUM(clicks) AS c, SUM(add_to_carts) AS a, SUM(purchases) AS p, SUM(revenue) AS r
    FROM {table}
    WHERE day >= %s AND day < %s AND variant IN ({names})
    GROUP BY variant, user_external_id
) per_user
GROUP BY variant
"""


def variant_user_totals(names: list[str], start: date, end: date) -> dict[str, dict[str, float]]:
    """Per variant: exposed users, users who clicked / added to cart / purchased, revenue and its sum of squares."""
    if not names:
        return {}
    sql = _USERS_SQL.format(table=DailyVariantUser._meta.db_table, names=", ".join(["%s"] * len(names)))
    with connection.cursor() as cur:
        cur.execute(sql, [start, end, *names])
        rows = cur.fetchall()
    return {
        r[0]: {
            "users": int(r[1]), "clicked": int(r[2] or 0), "added_to_cart": int(r[3] or 0), "purchased": int(r[4] or 0),
            "revenue": float(r[5] or 0), "revenue_sq": float(r[6] or 0),
        }
        for r in rows
    }


def experiment_report(experiment: Experiment, today: date) -> ExperimentReport:
    """Per variant of ``experiment``: exposure, per-user rates with 95% intervals, tests against the control."""
    variants = list(
        ABVariant.objects.filter(experiment=experiment).select_related("policy", "model_version")
        .order_by("-is_control", "name")
    )
    days = experiment_days(experiment, today)
    report = ExperimentReport(experiment, *(days or (None, None)))
    names = [v.name for v in variants]
    cells: dict[str, dict[str, int]] = {}
    users: dict[str, dict[str, float]] = {}
    if days:
        for c in (
            DailySegmentCount.objects.filter(day__gte=days[0], day__lt=days[1], attributed=True, variant__in=names)
            .values("variant")
            .annotate(
                n_impressions=Sum("impressions"), tail=Sum("impressions", filter=Q(segment=Segment.TAIL)),
                n_clicks=Sum("clicks"),
            )
        ):
            cells[c["variant"]] = {"impressions": c["n_impressions"] or 0, "tail": c["tail"] or 0,
                                   "clicks": c["n_clicks"] or 0}
        users = variant_user_totals(names, *days)
        report.fill = fill_state(*days)

    empty_users = {"users": 0, "clicked": 0, "added_to_cart": 0, "purchased": 0, "revenue": 0.0, "revenue_sq": 0.0}
    control = next((v for v in variants if v.is_control), None)
    control_users = users.get(control.name, empty_users) if control else None
    control_rev = stats.mean_summary(
        int(control_users["users"]), control_users["revenue"], control_users["revenue_sq"]
    ) if control_users else None
    for v in variants:
        u = users.get(v.name, empty_users)
        c = cells.get(v.name, {"impressions": 0, "tail": 0, "clicks": 0})
        n = int(u["users"])
        imp = c["impressions"]
        ctr_ci = stats.wilson_interval(min(c["clicks"], imp), imp) if imp else None
        rev = stats.mean_summary(n, u["revenue"], u["revenue_sq"])
        row: dict[str, Any] = {
            "variant": v.name, "pk": v.pk, "is_control": v.is_control, "role": "control" if v.is_control else "treatment",
            "policy": v.policy.name, "model_version": v.model_version.name if v.model_version else "active model",
            "share": v.share, "is_active": v.is_active, "users": n, "impressions": imp,
            "tail_share_of_impressions": c["tail"] / imp if imp else None,
            "clicks": c["clicks"], "clicks_per_impression": c["clicks"] / imp if imp else None,
            "clicks_per_impression_low": ctr_ci[0] if ctr_ci else None,
            "clicks_per_impression_high": ctr_ci[1] if ctr_ci else None,
            "revenue": round(u["revenue"], 2), "revenue_per_user": rev.mean,
            "revenue_per_user_low": rev.ci[0] if rev.ci else None, "revenue_per_user_high": rev.ci[1] if rev.ci else None,
        }
        if v.is_control or control_rev is None:
            row.update(revenue_lift=None, revenue_p_value=None,
                       revenue_verdict="This is the control." if v.is_control else "No control variant to compare with.")
        else:
            cmp = stats.mean_difference_test(control_rev, rev)
            row.update(
                revenue_lift=cmp.lift if cmp else None, revenue_p_value=cmp.p_value if cmp else None,
                revenue_verdict=stats.mean_verdict(control_rev, rev, cmp).text,
            )
        report.variants.append(row)
        for key, label in RATES:
            k = int(u[key])
            ci = stats.wilson_interval(k, n)
            rate = {
                "variant": v.name, "is_control": v.is_control, "metric": key, "metric_label": label,
                "users_who": k, "users": n, "rate": k / n if n else None,
                "low": ci[0] if ci else None, "high": ci[1] if ci else None,
                "lift": None, "lift_low": None, "lift_high": None, "p_value": None,
            }
            if v.is_control:
                rate["verdict"], rate["verdict_code"] = "This is the control.", "control"
            elif control_users is None:
                rate["verdict"], rate["verdict_code"] = "No control variant to compare with.", "not-enough-data"
            else:
                kc, nc = int(control_users[key]), int(control_users["users"])
                cmp = stats.two_proportion_test(kc, nc, k, n)
                verdict = stats.proportion_verdict(kc, nc, k, n, cmp)
                rate.update(
                    lift=cmp.lift if cmp else None,
                    lift_low=cmp.lift_ci[0] if cmp and cmp.lift_ci else None,
                    lift_high=cmp.lift_ci[1] if cmp and cmp.lift_ci else None,
                    p_value=cmp.p_value if cmp else None, verdict=verdict.text, verdict_code=verdict.code,
                )
            report.rates.append(rate)
    return report


def suggested_winner(report: ExperimentReport) -> dict[str, Any] | None:
    """The treatment with the largest significant conversion lift; otherwise the control."""
    better = [
        r for r in report.rates
        if r["metric"] == "purchased" and r.get("verdict_code") == "better" and r["lift"] is not None
    ]
    if better:
        best = max(better, key=lambda r: r["lift"])
        return next(v for v in report.variants if v["variant"] == best["variant"])
    return report.control
