"""A/B experiments: which variants serve, stable salted assignment, the per-user count table, the report, the actions, the page."""
from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.test import Client

from recommender.ingestion import do_ingest_events, do_upsert_items
from recommender.models import (
    ABVariant, DailyVariantUser, Experiment, ExposurePolicy, Item, ModelVersion, ReportDay,
)
from recommender.reports import aggregation, stats
from recommender.reports.aggregation import do_aggregate_day, do_aggregate_pending
from recommender.reports.experiments import experiment_report, suggested_winner
from recommender.serving import policies
from recommender.serving.experiments import (
    ExperimentError, do_promote_winner, do_start_experiment, do_stop_experiment,
)
from recommender.serving.impressions import ServedRecord, do_log_impressions

from .experiment_data import make_experiment_data

pytestmark = pytest.mark.django_db

DAY = date(2026, 3, 8)
NOW = datetime(2026, 3, 9, 12, 0, tzinfo=timezone.utc)


def snapshot() -> policies.PolicySnapshot:
    return policies.load_snapshot(policies.change_key())


def arms(snap: policies.PolicySnapshot, n: int = 2000) -> list[str | None]:
    return [(v.name if v else None) for _, v in (snap.assign(f"user-{i}") for i in range(n))]


@pytest.fixture
def two_policies(db):
    return (ExposurePolicy.objects.create(name="current", is_default=True),
            ExposurePolicy.objects.create(name="boost", tail_boost=1.5))


def make_experiment(name: str, policies_: tuple, shares=(0.5, 0.5), control=True) -> Experiment:
    current, boost = policies_
    e = Experiment.objects.create(name=name)
    ABVariant.objects.create(name=f"{name}-a", experiment=e, policy=current, share=shares[0], is_control=control)
    ABVariant.objects.create(name=f"{name}-b", experiment=e, policy=boost, share=shares[1])
    return e


# --- serving -----------------------------------------------------------------------------------

def test_only_the_running_experiments_variants_serve(two_policies):
    # given a stand-alone variant (the pre-experiment kind) and a draft experiment
    ABVariant.objects.create(name="legacy", policy=two_policies[1], share=1.0)
    e = make_experiment("spring", two_policies)
    # then while nothing runs the stand-alone variant serves, the draft's do not
    assert set(arms(snapshot(), 50)) == {"legacy"}
    # when the experiment starts, only its variants serve, split by share
    do_start_experiment(e.pk)
    got = arms(snapshot())
    assert set(got) == {"spring-a", "spring-b"}
    assert got.count("spring-a") / len(got) == pytest.approx(0.5, abs=0.05)
    assert snapshot().experiment_id == e.pk
    # and the same user always gets the same arm
    assert got == arms(snapshot())
    # when it stops, its variants stop serving (the stand-alone one is back)
    do_stop_experiment(e.pk)
    assert set(arms(snapshot(), 50)) == {"legacy"}


def test_a_new_experiment_reshuffles_users(two_policies):
    first = make_experiment("first", two_policies)
    do_start_experiment(first.pk)
    before = [a and a.removeprefix("first-") for a in arms(snapshot())]
    do_stop_experiment(first.pk)
    second = make_experiment("second", two_policies)
    do_start_experiment(second.pk)
    after = [a and a.removeprefix("second-") for a in arms(snapshot())]
    # the same shares, a different salt: about half the users change arm (not none, not all)
    moved = sum(x != y for x, y in zip(before, after)) / len(before)
    assert 0.35 < moved < 0.65
    assert policies.assignment_salt(first.pk) != policies.assignment_salt(second.pk) != policies.assignment_salt(None)


def test_users_outside_the_shares_get_the_default_policy(two_policies):
    e = make_experiment("small", two_policies, shares=(0.1, 0.1))
    do_start_experiment(e.pk)
    snap = snapshot()
    got = arms(snap)
    assert got.count(None) / len(got) == pytest.approx(0.8, abs=0.04)
    row, variant = snap.assign(next(f"user-{i}" for i, a in enumerate(got) if a is None))
    assert variant is None and row.name == "current"


# --- actions -----------------------------------------------------------------------------------

def test_start_refuses_with_messages_that_say_what_to_change(two_policies):
    one = Experiment.objects.create(name="lonely")
    ABVariant.objects.create(name="lonely-a", experiment=one, policy=two_policies[0], is_control=True)
    with pytest.raises(ExperimentError, match="at least two active variants"):
        do_start_experiment(one.pk)
    no_control = make_experiment("nocontrol", two_policies, control=False)
    with pytest.raises(ExperimentError, match="Mark one active variant as the control"):
        do_start_experiment(no_control.pk)
    greedy = make_experiment("greedy", two_policies, shares=(0.7, 0.6))
    with pytest.raises(ExperimentError, match="add up to 1.3; they must total at most 1"):
        do_start_experiment(greedy.pk)
    ok = make_experiment("ok", two_policies)
    other = make_experiment("other", two_policies)
    do_start_experiment(ok.pk)
    with pytest.raises(ExperimentError, match="'ok' is running; stop it before starting 'other'"):
        do_start_experiment(other.pk)
    with pytest.raises(ExperimentError, match="only a draft can start"):
        do_start_experiment(ok.pk)
    with pytest.raises(ExperimentError, match="only a running experiment can stop"):
        do_stop_experiment(other.pk)
    # nothing was half-written
    assert Experiment.objects.get(pk=other.pk).status == Experiment.Status.DRAFT


def test_promote_stops_makes_the_policy_default_and_activates_the_model_version(two_policies):
    current, boost = two_policies
    old = ModelVersion.objects.create(name="v1", kind="ease", status=ModelVersion.Status.READY, is_active=True)
    new = ModelVersion.objects.create(name="v2", kind="ease", status=ModelVersion.Status.READY)
    e = make_experiment("promo", two_policies)
    ABVariant.objects.filter(name="promo-b").update(model_version=new)
    with pytest.raises(ExperimentError, match="never ran"):
        do_promote_winner(e.pk, ABVariant.objects.get(name="promo-b").pk)
    do_start_experiment(e.pk)
    key_before = policies.change_key()
    # when the treatment is promoted while running
    message = do_promote_winner(e.pk, ABVariant.objects.get(name="promo-b").pk)
    # then the experiment stopped with a winner, the policy is the default, the version is active
    e.refresh_from_db()
    assert e.status == Experiment.Status.STOPPED and e.stopped_at is not None and e.winner.name == "promo-b"
    assert list(ExposurePolicy.objects.filter(is_default=True).values_list("name", flat=True)) == ["boost"]
    assert list(ModelVersion.objects.filter(is_active=True).values_list("name", flat=True)) == ["v2"]
    assert "policy 'boost' is now the default policy" in message and "v2 is now the active model" in message
    # and serving sees it: a new change key, no variants, the winner's policy for everyone
    assert policies.change_key() != key_before
    snap = snapshot()
    assert snap.variants == () and snap.assign("anyone")[0].name == "boost"
    with pytest.raises(ExperimentError, match="already promoted"):
        do_promote_winner(e.pk, ABVariant.objects.get(name="promo-a").pk)
    assert old.pk  # (v1 was deactivated by do_activate)


def test_promote_refuses_a_variant_of_another_experiment_or_an_unservable_version(two_policies):
    a = make_experiment("x1", two_policies)
    b = make_experiment("x2", two_policies)
    do_start_experiment(a.pk)
    with pytest.raises(ExperimentError, match="is not part of 'x1'"):
        do_promote_winner(a.pk, ABVariant.objects.get(name="x2-a").pk)
    failed = ModelVersion.objects.create(name="broken", kind="ease", status=ModelVersion.Status.FAILED)
    ABVariant.objects.filter(name="x1-b").update(model_version=failed)
    with pytest.raises(ExperimentError, match="broken is failed and cannot serve"):
        do_promote_winner(a.pk, ABVariant.objects.get(name="x1-b").pk)
    # nothing changed: still running, default policy untouched
    assert Experiment.objects.get(pk=a.pk).status == Experiment.Status.RUNNING
    assert ExposurePolicy.objects.get(is_default=True).name == "current"
    assert b.status == Experiment.Status.DRAFT


# --- the per-(variant, user) count table -------------------------------------------------------

def _serve(user: str, items: str, when: datetime, variant: str) -> str:
    pks = dict(Item.objects.values_list("external_id", "pk"))
    rid = str(uuid.uuid4())
    do_log_impressions([ServedRecord(
        request_id=rid, served_at=when, endpoint="user", user_id=user, variant=variant, policy="p",
        model_version="v1", fallback="", item_pks=tuple(pks[i] for i in items), item_ids=tuple(items), segments="",
    )])
    return rid


def _ingest(*events) -> None:
    do_ingest_events([
        {"user_id": u, "item_id": i, "event_type": t, "timestamp": ts.isoformat(), "event_id": uuid.uuid4().hex,
         **({"request_id": r} if r else {}), **({"value": v} if v is not None else {})}
        for u, i, t, ts, r, v in events
    ], now=NOW)


def _rows() -> dict[tuple, list]:
    return {
        (r.day, r.variant, r.user_external_id): [r.impressions, r.clicks, r.add_to_carts, r.purchases, r.revenue]
        for r in DailyVariantUser.objects.all()
    }


@pytest.fixture
def served(db):
    do_upsert_items([{"item_id": i, "title": i, "price": p} for i, p in (("a", "10.00"), ("c", "5.50"), ("d", "3.00"), ("e", "7.25"))])
    t = datetime(2026, 3, 8, 9, tzinfo=timezone.utc)
    r1 = _serve("u1", "ac", t, "ctl")
    r2 = _serve("u1", "d", t + timedelta(hours=1), "ctl")
    r3 = _serve("u2", "ad", t, "trt")
    _serve("u3", "ac", t, "")  # outside any experiment: no rows
    later = t + timedelta(hours=2)
    _ingest(
        ("u1", "c", "click", later, r1, None), ("u1", "c", "click", later, r1, None),  # a double click: one click
        ("u1", "c", "purchase", later, r1, 2),  # 2 x 5.50
        ("u1", "d", "click", later, r2, None),
        ("u2", "d", "add_to_cart", later, r3, None),
        ("u2", "e", "purchase", later, r3, None),  # e was not in r3: not attributed, not counted
        ("u2", "a", "click", later, str(uuid.uuid4()), None),  # an unknown list: not counted
        ("u4", "a", "purchase", later, None, None),  # no list at all
    )
    return {"r3": r3}


def test_variant_user_rows_count_each_users_attributed_events(served):
    do_aggregate_day(DAY, now=NOW, lag=timedelta(0))
    assert _rows() == {
        (DAY, "ctl", "u1"): [3, 2, 0, 1, Decimal("11.00")],
        (DAY, "trt", "u2"): [2, 0, 1, 0, Decimal("0.00")],
    }
    # the Python path (SQLite) computes the same rows as the SQL one
    start, end = aggregation.day_bounds(DAY)
    python = {
        (r.day, r.variant, r.user_external_id): [r.impressions, r.clicks, r.add_to_carts, r.purchases, r.revenue]
        for r in aggregation._variant_users_in_python(DAY, start, end)
    }
    assert python == _rows()


def test_variant_user_rows_never_double_count_and_late_events_reopen_the_day(served):
    do_aggregate_pending(NOW, lag=timedelta(0))
    first = _rows()
    do_aggregate_pending(NOW, lag=timedelta(0))
    do_aggregate_day(DAY, now=NOW, lag=timedelta(0))
    assert _rows() == first
    # a purchase of the listed d arrives late for yesterday
    _ingest(("u2", "d", "purchase", datetime(2026, 3, 8, 20, tzinfo=timezone.utc), served["r3"], 3))
    result = do_aggregate_pending(NOW, lag=timedelta(0))
    assert DAY in result.reopened
    assert _rows()[(DAY, "trt", "u2")] == [2, 0, 1, 1, Decimal("9.00")]
    assert ReportDay.objects.get(day=DAY).status == ReportDay.Status.FILLED


def test_a_crashed_fill_leaves_the_previous_user_rows(served, monkeypatch):
    do_aggregate_day(DAY, now=NOW, lag=timedelta(0))
    before = _rows()
    _ingest(("u2", "d", "purchase", datetime(2026, 3, 8, 20, tzinfo=timezone.utc), served["r3"], 1))

    def boom(*args):
        raise RuntimeError("worker killed")

    monkeypatch.setattr(aggregation, "_insert_variant_users", boom)
    with pytest.raises(RuntimeError):
        do_aggregate_day(DAY, now=NOW, lag=timedelta(0))
    assert _rows() == before


# --- the report --------------------------------------------------------------------------------

@pytest.fixture
def data(db):
    return make_experiment_data(DAY)


def test_report_figures_come_from_the_count_tables(data):
    report = experiment_report(data.experiment, DAY + timedelta(days=1))
    assert (report.start, report.end) == (DAY, DAY + timedelta(days=2))
    by_name = {v["variant"]: v for v in report.variants}
    assert list(by_name) == ["tb-ctl", "tb-boost"]  # the control first
    for name, users in data.arms.items():
        row = by_name[name]
        assert row["users"] == len(users) > 100
        assert row["impressions"] == data.impressions[name]
        assert row["tail_share_of_impressions"] == pytest.approx(data.tail_impressions[name] / data.impressions[name])
        assert row["revenue"] == pytest.approx(data.revenue[name])
        assert row["revenue_per_user"] == pytest.approx(data.revenue[name] / len(users))
    rates = {(r["variant"], r["metric"]): r for r in report.rates}
    nc = len(data.arms["tb-ctl"])
    nb = len(data.arms["tb-boost"])
    for metric in ("clicked", "added_to_cart", "purchased"):
        kc, kb = data.did["tb-ctl"][metric], data.did["tb-boost"][metric]
        assert rates[("tb-ctl", metric)]["rate"] == pytest.approx(kc / nc)
        assert (rates[("tb-ctl", metric)]["low"], rates[("tb-ctl", metric)]["high"]) == pytest.approx(stats.wilson_interval(kc, nc))
        expected = stats.two_proportion_test(kc, nc, kb, nb)
        assert rates[("tb-boost", metric)]["p_value"] == pytest.approx(expected.p_value)
        assert rates[("tb-boost", metric)]["lift"] == pytest.approx(kb / nb / (kc / nc) - 1)
        assert rates[("tb-ctl", metric)]["verdict"] == "This is the control."
    # about 1 in 6 against 1 in 20 buyers: clearly better
    assert rates[("tb-boost", "purchased")]["verdict_code"] == "better"
    assert rates[("tb-boost", "purchased")]["verdict"].startswith("Better than control: +")
    assert suggested_winner(report)["variant"] == "tb-boost"


def test_report_says_not_enough_data_for_a_small_experiment(db):
    small = make_experiment_data(DAY, n_users=60, prefix="sm")
    report = experiment_report(small.experiment, DAY + timedelta(days=1))
    verdicts = {r["verdict_code"] for r in report.rates if not r["is_control"]}
    assert verdicts == {"not-enough-data"}
    assert suggested_winner(report)["variant"] == "sm-ctl"


def test_report_of_a_draft_has_no_figures(two_policies):
    e = make_experiment("draft", two_policies)
    report = experiment_report(e, DAY)
    assert report.start is None and all(v["users"] == 0 for v in report.variants)


# --- the page ----------------------------------------------------------------------------------

def test_pages_render_the_figures_and_export_csv(admin_client, data):
    listing = admin_client.get("/admin/insights/experiments/")
    assert listing.status_code == 200 and b"tb tail boost" in listing.content and b"running" in listing.content
    url = f"/admin/insights/experiments/{data.experiment.pk}/"
    page = admin_client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-chart="rates-chart"' in html and "Better than control" in html
    assert f"{len(data.arms['tb-boost']):,}" in html
    csv = admin_client.get(url, {"csv": "rates"}).content.decode("utf-8-sig").splitlines()
    assert csv[0].startswith("variant,metric_label,users_who,users,rate")
    assert len(csv) == 1 + 2 * 3
    assert admin_client.get(url, {"csv": "nope"}).status_code == 400
    assert admin_client.get("/admin/recommender/experiment/").status_code == 200
    assert admin_client.get(f"/admin/recommender/experiment/{data.experiment.pk}/change/").status_code == 200
    assert admin_client.get("/admin/recommender/experiment/add/").status_code == 200


def test_page_actions_stop_and_promote_with_messages(admin_client, data):
    url = f"/admin/insights/experiments/{data.experiment.pk}/"
    r = admin_client.post(url, {"action": "stop"}, follow=True)
    assert "Stopped &#x27;tb tail boost&#x27;" in r.content.decode()
    r = admin_client.post(url, {"action": "stop"}, follow=True)
    assert "only a running experiment can stop" in r.content.decode()
    r = admin_client.post(url, {"action": "promote", "variant": str(data.boost.pk)}, follow=True)
    assert "is now the default policy" in r.content.decode()
    assert ExposurePolicy.objects.get(is_default=True).name == "tb-tail-boost"
    assert Experiment.objects.get(pk=data.experiment.pk).winner_id == data.boost.pk


def test_page_actions_need_csrf_staff_and_permission(data, django_user_model):
    url = f"/admin/insights/experiments/{data.experiment.pk}/"
    staff = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff)
    assert strict.post(url, {"action": "stop"}).status_code == 403  # no CSRF token
    loose = Client()
    loose.force_login(staff)
    r = loose.post(url, {"action": "stop"}, follow=True)
    assert "permission" in r.content.decode()
    assert Experiment.objects.get(pk=data.experiment.pk).status == Experiment.Status.RUNNING
    anonymous = Client().post(url, {"action": "stop"})
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    assert Experiment.objects.get(pk=data.experiment.pk).status == Experiment.Status.RUNNING


def _inline(prefix: str, rows: list[dict], initial: int = 0) -> dict:
    data = {f"{prefix}-TOTAL_FORMS": str(len(rows)), f"{prefix}-INITIAL_FORMS": str(initial),
            f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"}
    for i, row in enumerate(rows):
        data.update({f"{prefix}-{i}-{k}": v for k, v in row.items()})
    return data


def test_admin_defines_an_experiment_with_its_variants_and_locks_them_once_it_runs(admin_client, two_policies):
    current, boost = two_policies
    # when staff add an experiment with two variants inline
    r = admin_client.post("/admin/recommender/experiment/add/", {
        "name": "autumn", "hypothesis": "more tail",
        **_inline("variants", [
            {"name": "autumn-ctl", "is_control": "on", "policy": str(current.pk), "share": "0.5", "is_active": "on"},
            {"name": "autumn-boost", "policy": str(boost.pk), "share": "0.5", "is_active": "on"},
        ]),
    })
    assert r.status_code == 302, r.content.decode()[:3000]
    e = Experiment.objects.get(name="autumn")
    assert e.status == Experiment.Status.DRAFT
    assert sorted(e.variants.values_list("name", "is_control")) == [("autumn-boost", False), ("autumn-ctl", True)]
    # a second control is refused with the constraint's message
    r = admin_client.post(f"/admin/recommender/experiment/{e.pk}/change/", {
        "name": "autumn", "hypothesis": "more tail",
        **_inline("variants", [
            {"id": str(v.pk), "experiment": str(e.pk), "name": v.name, "is_control": "on", "policy": str(v.policy_id),
             "share": "0.5", "is_active": "on"}
            for v in e.variants.order_by("name")
        ], initial=2),
    })
    assert r.status_code == 200 and "An experiment has one control variant; untick" in r.content.decode()
    # once it runs, the page shows the variants read-only and saving the experiment keeps them
    do_start_experiment(e.pk)
    page = admin_client.get(f"/admin/recommender/experiment/{e.pk}/change/")
    assert page.status_code == 200 and 'name="variants-0-share"' not in page.content.decode()
    r = admin_client.post(f"/admin/recommender/experiment/{e.pk}/change/", {
        "name": "autumn", "hypothesis": "more tail, said twice", **_inline("variants", [], initial=0),
    })
    assert r.status_code == 302, r.content.decode()[:3000]
    e.refresh_from_db()
    assert e.hypothesis == "more tail, said twice" and e.variants.count() == 2 and e.status == Experiment.Status.RUNNING
