"""The exposure report: shares, coverage, Gini, CTR and conversion by segment and variant; bad input.

The report reads the daily count tables, so every test that expects figures runs the
aggregation job first, as beat does every 15 minutes in production.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from recommender.models import ABVariant, ExposurePolicy
from recommender.reports.aggregation import do_aggregate_pending
from recommender.serving import impressions

from .serving_data import make_shop, write_version

pytestmark = pytest.mark.django_db
REPORT = "/api/v1/reports/exposure"


def aggregate() -> None:
    """The beat job, counting events ingested moments ago (no safety margin for late commits)."""
    do_aggregate_pending(datetime.now(timezone.utc), lag=timedelta(0))


@pytest.fixture
def served(api, serving_settings, clock, tmp_path):
    """Lists served to three users, logged; u1 clicks and buys its first item, u2 clicks its second."""
    make_shop()
    write_version(tmp_path / "artifacts", "v1")
    ExposurePolicy.objects.create(name="fair", is_default=True, min_tail_share=0.5)
    bodies = {u: api.get(f"/api/v1/recommendations/users/{u}", {"k": 4}).json() for u in ("u1", "u2", "u3")}
    assert impressions.flush() == 3
    now = datetime.now(timezone.utc)

    def ev(user, body, pos, kind, n):
        return {
            "user_id": user, "item_id": body["items"][pos]["item_id"], "event_type": kind,
            "timestamp": now.isoformat(), "request_id": body["request_id"], "event_id": f"attr-{n}",
        }

    events = [
        ev("u1", bodies["u1"], 0, "click", 1),
        ev("u1", bodies["u1"], 0, "click", 2),  # a double click counts once
        ev("u1", bodies["u1"], 0, "purchase", 3),
        ev("u2", bodies["u2"], 1, "click", 4),
    ]
    r = api.post("/api/v1/events", data=orjson.dumps(events), content_type="application/json")
    assert r.status_code == 200, r.content
    return bodies


def test_report_reads_the_count_tables_not_raw_rows(api, served):
    # given lists and conversions in the raw tables, but no aggregation run yet
    body = api.get(REPORT).json()
    assert body["impressions"] == 0 and body["lists_served"] == 0
    assert body["fill_state"]["filled"] + body["fill_state"]["partial"] == 0

    aggregate()

    body = api.get(REPORT).json()
    assert body["impressions"] == 12 and body["lists_served"] == 3
    assert body["fill_state"]["partial"] == 1  # today, still open


def test_report_counts_impressions_and_attributed_conversions(api, served):
    aggregate()
    r = api.get(REPORT)
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["lists_served"] == 3 and body["impressions"] == 12
    segs = [i["segment"] for b in served.values() for i in b["items"]]
    assert body["tail_share_of_impressions"] == pytest.approx(segs.count("tail") / 12, abs=1e-6)
    clicks = body["by_segment"]["head"]["clicks"] + body["by_segment"]["tail"]["clicks"]
    purchases = body["by_segment"]["head"]["purchases"] + body["by_segment"]["tail"]["purchases"]
    assert (clicks, purchases) == (2, 1)
    bought_segment = served["u1"]["items"][0]["segment"]
    assert body["tail_share_of_conversions"] == (1.0 if bought_segment == "tail" else 0.0)
    bought = body["by_segment"][bought_segment]
    assert bought["purchases"] == 1
    assert bought["conversion_rate"] == pytest.approx(1 / segs.count(bought_segment), abs=1e-6)
    clicked = {served["u1"]["items"][0]["segment"], served["u2"]["items"][1]["segment"]}
    for seg in ("head", "tail"):
        n = segs.count(seg)
        assert body["by_segment"][seg]["impressions"] == n
        if n:
            assert body["by_segment"][seg]["ctr"] == pytest.approx(body["by_segment"][seg]["clicks"] / n, abs=1e-6)
    assert sum(body["by_segment"][s]["clicks"] for s in clicked) == 2
    assert body["by_variant"]["(none)"]["ctr"] == pytest.approx(2 / 12, abs=1e-6)
    assert body["by_variant"]["(none)"]["conversion_rate"] == pytest.approx(1 / 12, abs=1e-6)
    assert body["catalog_items"] == 39  # sku-39 is out of stock
    shown = {i["item_id"] for b in served.values() for i in b["items"]}
    assert body["items_shown"] == len(shown)
    assert body["catalog_coverage"] == pytest.approx(len(shown) / 39, abs=1e-6)
    assert 0 < body["gini_of_exposure"] < 1


def test_report_splits_by_variant(api, served, clock):
    ABVariant.objects.create(name="B", policy=ExposurePolicy.objects.get(), share=1.0)
    clock.advance(2.1)  # past the policy check
    b = api.get("/api/v1/recommendations/users/u5", {"k": 4}).json()
    impressions.flush()
    aggregate()
    body = api.get(REPORT).json()
    assert set(body["by_variant"]) == {"(none)", "B"}
    assert body["by_variant"]["B"]["impressions"] == 4
    assert body["by_variant"]["B"]["tail_share_of_impressions"] == pytest.approx(
        [i["segment"] for i in b["items"]].count("tail") / 4, abs=1e-6
    )
    assert body["by_variant"]["(none)"]["impressions"] == 12


def test_a_time_inside_a_day_takes_in_the_whole_day(api, served):
    aggregate()
    now = datetime.now(timezone.utc)
    body = api.get(REPORT, {"from": now.isoformat(), "to": (now + timedelta(seconds=1)).isoformat()}).json()
    assert body["from"] == now.date().isoformat()
    assert body["to"] == (now.date() + timedelta(days=1)).isoformat()
    assert body["impressions"] == 12


def test_report_window_excludes_other_periods(api, served):
    aggregate()
    later = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    body = api.get(REPORT, {"from": later, "to": (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()}).json()
    assert body["lists_served"] == 0 and body["impressions"] == 0
    assert body["tail_share_of_impressions"] is None


@pytest.mark.parametrize(
    "query, message",
    [
        ({"from": "yesterday"}, "not a date or time"),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "must be before"),
        ({"from": "2020-01-01", "to": "2026-01-01"}, "at most 366 days"),
        ({"since": "2026-01-01"}, "Unknown query parameter(s): since"),
    ],
)
def test_bad_report_query_is_400(api, serving_settings, query, message):
    r = api.get(REPORT, query)
    assert r.status_code == 400
    assert message in r.json()["detail"]


def test_reports_scope_is_required(client_for, serving_settings):
    r = client_for("recommend").get(REPORT)
    assert r.status_code == 403 and "'reports' scope" in r.json()["detail"]
