"""simulate_traffic: SIMULATED shoppers served by the real recommender, logged, answered and reported per A/B arm.

A tiny synthetic shop and no trained model (the fallbacks serve), so it runs in seconds.
"""
from __future__ import annotations

import io
import re
from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count
from django.utils import timezone

from recommender.demo.simulate import CONTROL_POLICY, DEMO_EXPERIMENT, TREATMENT_POLICY
from recommender.models import (
    ABVariant, DailyVariantUser, Event, EventType, Experiment, ExposurePolicy, Item, ReportDay, ServedList,
)
from recommender.reports.experiments import experiment_report

pytestmark = pytest.mark.django_db

SHOP = {"items": 150, "users": 90, "weeks": 2, "seed": 4}
SHOP_FLAGS = {"shop_items": 150, "shop_users": 90, "shop_weeks": 2, "shop_seed": 4}
DAYS, PER_DAY = 3, 40


def simulate(**options) -> str:
    out = io.StringIO()
    given = {"days": DAYS, "lists_per_day": PER_DAY, "experiment": DEMO_EXPERIMENT, "seed": 1, **SHOP_FLAGS}
    call_command("simulate_traffic", stdout=out, **{**given, **options})
    return out.getvalue()


@pytest.fixture
def demo_shop(serving_settings):
    call_command("seed_demo", stdout=io.StringIO(), stderr=io.StringIO(), verbosity=0, **SHOP)
    return serving_settings


def attributed(variant: str, event_type: int) -> int:
    """Events of ``event_type`` whose request_id names a list served under ``variant`` that showed the item."""
    lists = {sl.request_id: set(sl.items) for sl in ServedList.objects.filter(variant=variant)}
    return sum(
        1 for rid, item in Event.objects.filter(event_type=event_type, request_id__in=list(lists))
        .values_list("request_id", "item_id")
        if item in lists[rid]
    )


def test_simulated_lists_are_served_logged_answered_and_reported_per_arm(demo_shop, admin_client):
    # when a simulation runs under the demo experiment
    out = simulate()
    # then it says the traffic is simulated, and the experiment exists with both arms, started on the first day
    assert out.startswith("SIMULATED traffic")
    experiment = Experiment.objects.get(name=DEMO_EXPERIMENT)
    assert experiment.status == Experiment.Status.RUNNING
    today = timezone.now().date()
    assert experiment.started_at.date() == today - timedelta(days=DAYS)
    control = ABVariant.objects.get(experiment=experiment, is_control=True)
    treatment = ABVariant.objects.get(experiment=experiment, is_control=False)
    assert (control.policy.name, control.policy.tail_boost, control.policy.min_tail_share) == (CONTROL_POLICY, 0, 0)
    defaults = ExposurePolicy()
    assert (treatment.policy.name, treatment.policy.tail_boost, treatment.policy.min_tail_share) == (
        TREATMENT_POLICY, defaults.tail_boost, defaults.min_tail_share)

    # every list was logged as serving logs it: on the simulated days, under a variant, with its policy
    lists = list(ServedList.objects.all())
    assert len(lists) == DAYS * PER_DAY
    assert {sl.served_at.date() for sl in lists} == {today - timedelta(days=n) for n in range(1, DAYS + 1)}
    by_variant = Counter(sl.variant for sl in lists)
    assert set(by_variant) == {control.name, treatment.name} and min(by_variant.values()) >= 0.3 * len(lists)
    policy_of = {control.name: CONTROL_POLICY, treatment.name: TREATMENT_POLICY}
    assert all(sl.policy == policy_of[sl.variant] and sl.endpoint == "user" for sl in lists)
    assert all(len(sl.segments) == len(sl.items) == 10 for sl in lists)
    # one impression event per listed item, stamped with the list's time
    impressions = Event.objects.filter(event_type=EventType.IMPRESSION, request_id__isnull=False)
    assert impressions.count() == sum(len(sl.items) for sl in lists)
    served_at = {sl.request_id: sl.served_at for sl in lists}
    assert all(ts == served_at[rid] for rid, ts in impressions.values_list("request_id", "timestamp")[:200])
    # and the shoppers' responses are attributed to their lists, under both arms
    for variant in (control.name, treatment.name):
        assert attributed(variant, EventType.CLICK) > 0
    carts = attributed(control.name, EventType.ADD_TO_CART) + attributed(treatment.name, EventType.ADD_TO_CART)
    assert carts > 0
    # responses come after their list was served
    for rid, ts in Event.objects.filter(event_type=EventType.CLICK, request_id__isnull=False).values_list(
        "request_id", "timestamp"
    ):
        assert ts > served_at[rid]

    # the experiment report (the admin page's) shows both arms with users, from the aggregated counts
    report = experiment_report(experiment, today)
    rows = {v["variant"]: v for v in report.variants}
    assert set(rows) == {control.name, treatment.name}
    for name, row in rows.items():
        assert row["users"] > 0 and row["impressions"] == 10 * by_variant[name]
        assert row["clicks"] > 0
    # the fair-exposure arm shows more of the tail: every list it served holds its minimum tail share
    # (segments as served), and the report (segments as of each day's start) sees more tail than the control's
    for sl in lists:
        if sl.variant == treatment.name:
            assert sl.segments.count("t") >= defaults.min_tail_share * len(sl.segments), sl.segments
    assert rows[treatment.name]["tail_share_of_impressions"] > rows[control.name]["tail_share_of_impressions"]
    assert DailyVariantUser.objects.filter(variant=treatment.name).exists()

    # and the admin pages show it: the experiment page with both arms, saying the traffic is simulated,
    html = admin_client.get(f"/admin/insights/experiments/{experiment.pk}/").content.decode()
    assert control.name in html and treatment.name in html and "SIMULATED" in html
    # the exposure page with the simulated impressions and the recommended purchases' tail share
    html = admin_client.get("/admin/insights/exposure/").content.decode()
    cards = dict(re.findall(r'data-card="([a-z_]+)" data-value="([^"]*)"', html))
    assert int(cards["impressions"]) >= DAYS * PER_DAY * 10
    assert cards["tail_share_of_conversions"] != ""


def test_a_rerun_stores_nothing_twice(demo_shop):
    simulate()
    counts = (ServedList.objects.count(), Event.objects.count(), Experiment.objects.count(), ABVariant.objects.count())
    by_type = dict(Event.objects.values_list("event_type").annotate(n=Count("id")))
    # when the same simulation runs again
    out = simulate()
    # then nothing new is stored, and it says so
    assert (ServedList.objects.count(), Event.objects.count(), Experiment.objects.count(),
            ABVariant.objects.count()) == counts
    assert dict(Event.objects.values_list("event_type").annotate(n=Count("id"))) == by_type
    assert f"already there from an earlier run: {DAYS * PER_DAY}" in out
    # while another seed simulates other shoppers' visits
    call_command("simulate_traffic", days=1, lists_per_day=5, experiment=DEMO_EXPERIMENT, seed=2,
                 stdout=io.StringIO(), **SHOP_FLAGS)
    assert ServedList.objects.count() == counts[0] + 5


def test_without_an_experiment_lists_serve_under_the_default_policy(demo_shop):
    out = io.StringIO()
    call_command("simulate_traffic", days=1, lists_per_day=10, no_aggregate=True, stdout=out, **SHOP_FLAGS)
    assert set(ServedList.objects.values_list("variant", flat=True)) == {""}
    assert not Experiment.objects.exists()
    assert "variant (none: default policy): 10 lists" in out.getvalue()
    # --no-aggregate leaves the count tables to aggregate_reports, and says so
    assert not ReportDay.objects.exists() and "not aggregated" in out.getvalue()


def test_a_shop_seeded_otherwise_is_refused_with_what_to_pass(demo_shop):
    with pytest.raises(CommandError, match=r"--shop-seed"):
        call_command("simulate_traffic", days=1, lists_per_day=5, stdout=io.StringIO(),
                     **{**SHOP_FLAGS, "shop_seed": 5})
    with pytest.raises(CommandError, match=r"at least 1"):
        call_command("simulate_traffic", days=0, lists_per_day=5, stdout=io.StringIO(), **SHOP_FLAGS)
    assert not ServedList.objects.exists() and Item.objects.count() == SHOP["items"]


def test_a_stopped_experiment_is_not_reused(demo_shop):
    simulate(days=1, lists_per_day=4)
    Experiment.objects.filter(name=DEMO_EXPERIMENT).update(status=Experiment.Status.STOPPED)
    with pytest.raises(CommandError, match="another --experiment name"):
        simulate(days=1, lists_per_day=4)




def test_while_another_experiment_runs_nothing_is_created(demo_shop):
    simulate(days=1, lists_per_day=4, experiment="First")
    counts = (Experiment.objects.count(), ABVariant.objects.count(), ExposurePolicy.objects.count())
    with pytest.raises(CommandError, match="'First' is running; stop it"):
        simulate(days=1, lists_per_day=4, experiment="Second")
    assert (Experiment.objects.count(), ABVariant.objects.count(), ExposurePolicy.objects.count()) == counts
