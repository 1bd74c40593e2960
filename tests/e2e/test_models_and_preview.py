"""A merchandiser's view: the Models page (versions, runs, a roll back) and the policy's live preview."""
from __future__ import annotations

import pytest

from recommender.models import ExposurePolicy, ModelVersion, ServedList, TrainingRun
from tests.integration.serving_data import clock, make_shop, serving_settings, write_version  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop(serving_settings, clock, tmp_path):
    make_shop()
    older = write_version(tmp_path / "artifacts", "hybrid-20260301", seed=1)
    newer = write_version(tmp_path / "artifacts", "hybrid-20260302", seed=2)
    for version, ndcg, aplt in ((older, 0.121, 0.28), (newer, 0.139, 0.34)):
        version.metrics = {"validation": {"NDCG@10": ndcg, "Recall@10": 0.2, "APLT@10": aplt, "Coverage@10": 0.4},
                           "validation_popularity": {"NDCG@10": 0.1}}
        version.save(update_fields=["metrics"])
        TrainingRun.objects.create(
            status="succeeded", stage="activate", progress=1.0, trigger="schedule", model_version=version,
            log=f"[   1.0s] snapshot: 540 events\n[  20.0s] validate: NDCG@10 {ndcg:.4f} vs popularity 0.1000\n"
                f"[  41.0s] activate: activated {version.name}: validation NDCG@10 {ndcg:.4f} (popularity 0.1000)\n",
        )
    TrainingRun.objects.create(status="running", stage="fit", progress=0.6, trigger="admin",
                               log="[   1.0s] snapshot: 560 events\n[  12.0s] fit: refitting on the whole window\n")
    return older, newer


def test_models_page_lists_versions_and_runs_and_rolls_back(page, live_server, admin_login, screenshot, shop):
    older, newer = shop
    admin_login()
    page.click("text=Models")
    page.wait_for_selector("table[data-table=versions]")
    rows = page.locator("table[data-table=versions] tbody tr.version-row")
    assert rows.count() == 2
    assert page.get_attribute("tr.version-row.is-active", "data-version") == "hybrid-20260302"
    assert "39.0%" in page.inner_text("tr.version-row.is-active")  # NDCG@10 vs the popularity baseline
    bars = page.locator("svg[data-chart=ndcg] rect.bar")
    assert sorted(b.get_attribute("data-label") for b in bars.all()) == sorted(
        ["hybrid-20260301", "hybrid-20260301 · popularity", "hybrid-20260302", "hybrid-20260302 · popularity"])
    # the running run shows its progress; its log opens on a click
    running = page.locator("tr[data-status=running]")
    assert running.locator(".rec-progress").get_attribute("data-progress") == "0.6"
    running.locator("summary").click()
    assert "refitting on the whole window" in running.locator("pre").inner_text()
    screenshot("admin-models")
    # when staff roll back, the older version is active and the page says so
    page.click("#btn-rollback")
    page.wait_for_selector(".messagelist")
    assert "Rolled back: hybrid-20260301 is the active model again" in page.inner_text(".messagelist")
    assert page.get_attribute("tr.version-row.is-active", "data-version") == "hybrid-20260301"
    assert ModelVersion.objects.get(is_active=True).pk == older.pk


def after_ids(page) -> str:
    return page.get_attribute("#preview-results table[data-list=after]", "data-items")


def test_policy_preview_changes_after_but_not_before(page, live_server, admin_login, screenshot, shop):
    policy = ExposurePolicy.objects.create(name="house", is_default=True, tail_boost=0.0, min_tail_share=0.0)
    admin_login()
    page.goto(f"{live_server.url}/admin/recommender/exposurepolicy/{policy.pk}/change/")
    # the panel offers recently active shoppers; picking one shows both lists
    page.wait_for_selector("#preview-results .preview-pick")
    page.fill("#preview-user", "u1")
    page.wait_for_selector("#preview-results table[data-list=after] tbody tr[data-item-id]")
    before = page.get_attribute("#preview-results table[data-list=before]", "data-items")
    assert after_ids(page) == before  # nothing edited yet
    assert "matches your interests" in page.inner_text("#preview-results") or "similar to" in page.inner_text("#preview-results")
    # when the merchandiser raises the tail boost and the minimum tail share (not saved)
    updates = int(page.get_attribute("#policy-preview", "data-updates"))
    page.fill("#id_tail_boost", "3")
    page.fill("#id_min_tail_share", "0.5")
    page.wait_for_function(
        "b => document.querySelector('#preview-results table[data-list=after]')?.dataset.items !== b", arg=before)
    page.wait_for_function(
        "n => Number(document.getElementById('policy-preview').dataset.updates) > n", arg=updates)
    # then "after" changed and holds more tail items, while "before" is still the saved policy's list
    assert page.get_attribute("#preview-results table[data-list=before]", "data-items") == before
    after_segments = page.locator("#preview-results table[data-list=after] tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.segment)")
    before_segments = page.locator("#preview-results table[data-list=before] tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.segment)")
    assert after_segments.count("tail") > before_segments.count("tail")
    text = page.inner_text("#preview-results")
    assert "long-tail boost" in text and "Dropped out of the list" in text
    assert "tail_boost 0.0 → 3.0" in text
    screenshot("admin-policy-preview")
    # a bad number gets a message saying what to change
    page.fill("#id_min_tail_share", "1.7")
    page.wait_for_selector("#preview-results .preview-errors")
    assert "less than or equal to 1" in page.inner_text("#preview-results .preview-errors")
    # and nothing was saved or logged
    policy.refresh_from_db()
    assert policy.tail_boost == 0.0 and policy.min_tail_share == 0.0
    assert ServedList.objects.count() == 0
