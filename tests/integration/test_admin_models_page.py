"""The Models admin page: versions with their metrics side by side, training runs, and the buttons
to retrain now, activate and roll back (staff only, CSRF, a message for every outcome)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from django.test import Client

from recommender.models import ModelVersion, TrainingRun
from recommender.training.pipeline import do_activate

pytestmark = pytest.mark.django_db

URL = "/admin/insights/models/"
T0 = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)


def make_version(name: str, ndcg: float, pop: float, *, status="ready", aplt=0.3, coverage=0.2, days=0, log="") -> ModelVersion:
    version = ModelVersion.objects.create(
        name=name, kind="hybrid-transformer", status=status, created_at=T0 + timedelta(days=days),
        metrics={"validation": {"NDCG@10": ndcg, "Recall@10": ndcg * 1.5, "Recall@20": ndcg * 2, "APLT@10": aplt,
                                "TailRecall@20": 0.05, "Coverage@10": coverage},
                 "validation_popularity": {"NDCG@10": pop, "APLT@10": 0.0}},
    )
    if log:
        TrainingRun.objects.create(status="succeeded" if status == "ready" else status, trigger="schedule",
                                   progress=1.0, stage="activate" if status == "ready" else "gate",
                                   model_version=version, log=log, created_at=version.created_at)
    return version


@pytest.fixture
def versions():
    v1 = make_version("v1", 0.120, 0.100, days=0, log="[   1.0s] snapshot: reading\n[  60.0s] activate: activated v1: validation NDCG@10 0.1200 (popularity 0.1000)\n")
    v2 = make_version("v2", 0.139, 0.100, aplt=0.35, coverage=0.31, days=1)
    v3 = make_version("v3", 0.050, 0.100, status="rejected", days=2,
                      log="[  59.0s] gate: not activated: validation NDCG@10 0.0500 is below the popularity baseline's 0.1000; the active version stays\n")
    do_activate(v1)
    do_activate(v2)
    return v1, v2, v3


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_page_shows_versions_metrics_gate_charts_and_runs(admin_client, versions):
    TrainingRun.objects.create(status="running", stage="validate", progress=0.55, trigger="admin",
                               log="[   2.0s] snapshot: 1,234 events\n[  30.0s] validate: NDCG@10 0.1300 vs popularity 0.1000\n")
    r = admin_client.get(URL)
    assert r.status_code == 200
    html = r.content.decode()
    # versions side by side, the active one marked, metrics against the popularity baseline
    table = r.context["versions"]
    by_name = {row["name"]: row for row in table.rows}
    assert by_name["v2"]["active"] == "yes" and by_name["v1"]["active"] == ""
    assert by_name["v2"]["NDCG@10"] == 0.139 and by_name["v2"]["pop_ndcg"] == 0.1
    assert by_name["v2"]["vs_pop"] == pytest.approx(0.39)
    assert by_name["v1"]["gate"].startswith("passed: activated v1")
    assert by_name["v3"]["gate"].startswith("rejected: validation NDCG@10 0.0500 is below the popularity baseline")
    assert 'data-version="v2" data-status="ready" class="version-row is-active"' in html
    assert "39.0%" in html and "35.0%" in html  # vs popularity; APLT@10
    # the NDCG chart has a bar for each version and its baseline
    assert 'data-chart="ndcg"' in html and 'data-label="v2" data-value="0.139"' in html
    assert 'data-label="v2 · popularity" data-value="0.1"' in html
    assert 'data-chart="aplt"' in html and 'data-chart="coverage"' in html
    # training runs with status, stage, a progress bar and the log behind a <details>
    assert 'data-status="running"' in html and 'data-progress="0.55"' in html and "width: 55%" in html
    assert "<details class=\"run-log\">" in html and "validate: NDCG@10 0.1300 vs popularity 0.1000" in html
    # buttons: retrain, roll back (to v1), and activate on the non-active versions only
    assert 'id="btn-retrain"' in html and "Roll back to v1" in html
    assert 'data-activate="v1"' in html and 'data-activate="v3"' in html and 'data-activate="v2"' not in html
    assert html.count("csrfmiddlewaretoken") >= 4


def test_versions_and_runs_export_as_csv(admin_client, versions):
    r = admin_client.get(URL, {"csv": "versions"})
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    text = r.content.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("name,kind,status,active,created,activated,NDCG@10,Recall@10,APLT@10")
    assert "v2,hybrid-transformer,ready,yes" in text
    assert admin_client.get(URL, {"csv": "runs"}).status_code == 200
    assert admin_client.get(URL, {"csv": "ndcg"}).status_code == 200


def test_empty_page_says_what_to_do(admin_client):
    html = admin_client.get(URL).content.decode()
    assert "No model version yet: press Retrain now" in html and "No training run yet." in html


def test_retrain_now_queues_a_run_and_hands_it_to_the_worker(admin_client, monkeypatch):
    from recommender import tasks

    sent = []
    monkeypatch.setattr(tasks.train_model, "delay", lambda pk: sent.append(pk))
    r = admin_client.post(URL, {"action": "retrain"}, follow=True)
    run = TrainingRun.objects.get()
    assert sent == [run.pk] and run.trigger == "admin" and run.status == "queued"
    assert r.redirect_chain == [(URL, 302)]
    assert messages_of(r) == [f"Queued training run {run.pk}; its progress and log show below (reload to follow it)."]
    # a second press while the first waits says it will wait its turn
    r = admin_client.post(URL, {"action": "retrain"}, follow=True)
    assert f"Run {run.pk} is queued: this one starts when it finishes" in messages_of(r)[0]
    assert len(sent) == 2


def test_retrain_with_the_broker_down_says_so_and_marks_the_run_failed(admin_client, monkeypatch):
    from recommender import tasks

    def down(pk):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.train_model, "delay", down)
    r = admin_client.post(URL, {"action": "retrain"}, follow=True)
    assert "Could not queue the training run (broker unreachable)" in messages_of(r)[0]
    assert TrainingRun.objects.get().status == "failed"


def test_activate_a_ready_version(admin_client, versions):
    v1, v2, _ = versions
    r = admin_client.post(URL, {"action": "activate", "version": v1.pk}, follow=True)
    assert messages_of(r) == ["v1 is now the active model; serving switches to it within seconds."]
    assert ModelVersion.objects.get(is_active=True) == v1


@pytest.mark.parametrize("which, words", [
    ("v3", "v3 was rejected by the quality gate"),
    ("v2", "v2 is already the active model; nothing changed."),
    ("training", "training is still training; wait for its run to finish"),
    ("failed", "failed failed to train and has no usable artifact; retrain instead"),
])
def test_activate_refuses_what_cannot_serve(admin_client, versions, which, words):
    make_version("training", 0.1, 0.1, status="training", days=3)
    make_version("failed", 0.1, 0.1, status="failed", days=4)
    target = ModelVersion.objects.get(name=which)
    r = admin_client.post(URL, {"action": "activate", "version": target.pk}, follow=True)
    assert words in messages_of(r)[0]
    assert r.context["messages"]._loaded_messages[0].level_tag == "error"
    assert ModelVersion.objects.get(is_active=True).name == "v2"


def test_activate_an_unknown_or_missing_version(admin_client, versions):
    r = admin_client.post(URL, {"action": "activate", "version": 99999}, follow=True)
    assert "No model version with id 99999" in messages_of(r)[0]
    r = admin_client.post(URL, {"action": "activate", "version": "x"}, follow=True)
    assert "Pick a version to activate (got 'x')" in messages_of(r)[0]
    r = admin_client.post(URL, {"action": "explode"}, follow=True)
    assert "Unknown action 'explode'" in messages_of(r)[0]


def test_roll_back_activates_the_previously_active_ready_version(admin_client, versions):
    v1, v2, _ = versions
    r = admin_client.post(URL, {"action": "rollback"}, follow=True)
    assert messages_of(r) == ["Rolled back: v1 is the active model again (was v2); serving switches within seconds."]
    assert ModelVersion.objects.get(is_active=True) == v1
    # and rolling back again returns to v2 (the one active just before)
    admin_client.post(URL, {"action": "rollback"})
    assert ModelVersion.objects.get(is_active=True) == v2


def test_roll_back_without_an_earlier_version_explains(admin_client):
    only = make_version("only", 0.1, 0.09)
    do_activate(only)
    make_version("never-active", 0.2, 0.1, days=1)
    r = admin_client.post(URL, {"action": "rollback"}, follow=True)
    assert "There is no earlier version to roll back to" in messages_of(r)[0]
    assert ModelVersion.objects.get(is_active=True) == only


def test_buttons_are_staff_only_and_need_the_csrf_token(client, django_user_model, admin_user, versions, monkeypatch):
    from recommender import tasks

    monkeypatch.setattr(tasks.train_model, "delay", lambda pk: None)
    v1, v2, _ = versions
    # anonymous and non-staff users are sent to the login page; nothing changes
    r = client.post(URL, {"action": "activate", "version": v1.pk})
    assert r.status_code == 302 and "/admin/login/" in r["Location"]
    django_user_model.objects.create_user("shopper", password="pw")
    client.login(username="shopper", password="pw")
    for action in ("retrain", "rollback"):
        assert client.post(URL, {"action": action}).status_code == 302
    assert client.get(URL).status_code == 302
    # staff without the CSRF token are refused
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(URL, {"action": "rollback"}).status_code == 403
    assert ModelVersion.objects.get(is_active=True) == v2 and not TrainingRun.objects.filter(trigger="admin").exists()


def test_admin_index_links_the_models_page(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert f'href="{URL}"' in html and ">Models</a>" in html


def test_model_version_and_training_run_lists_link_the_models_page(admin_client, versions):
    for url in ("/admin/recommender/modelversion/", "/admin/recommender/trainingrun/"):
        html = admin_client.get(url).content.decode()
        assert f'href="{URL}" class="viewlink" id="rec-models-link"' in html, url


def test_page_queries_do_not_grow_with_versions_or_runs(admin_client, versions):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    admin_client.get(URL)  # the session and user are cached after the first request
    with CaptureQueriesContext(connection) as few:
        admin_client.get(URL)
    for i in range(5):
        make_version(f"more-{i}", 0.1, 0.1, days=10 + i, log="[   1.0s] activate: activated\n")
    with CaptureQueriesContext(connection) as many:
        admin_client.get(URL)
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
