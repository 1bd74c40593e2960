"""The report aggregation job: exact counts, attribution, idempotent re-runs, crash and resume, late events.

Data goes in through the real services (item upsert, event ingestion, impression logging);
the job runs under a fixed clock. ``lag=0``: the events are ingested moments before a run,
and the production safety margin would treat them all as possibly late.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from recommender.ingestion import do_upsert_items
from recommender.models import (
    DailyItemCount, DailySegmentCount, Event, EventType, ExposurePolicy, Item, ReportDay, ServedList,
)
from recommender.reports import aggregation, queries
from recommender.reports.aggregation import do_aggregate_day, do_aggregate_pending
from recommender.serving import reports as raw_reports

from . import report_pages_data
from .report_pages_data import at, serve

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
DAY1, DAY2, TODAY = date(2026, 3, 8), date(2026, 3, 9), date(2026, 3, 10)
LAG = timedelta(0)
PRICES = {"a": "10.00", "b": "20.00", "c": "5.50", "d": "3.00", "e": "7.25", "f": "100.00"}


def ingest(*events: tuple) -> None:
    """(user, item, type, time, request_id or None, value or None) tuples, ingested at the fixed NOW."""
    report_pages_data.ingest(NOW, *events)




@pytest.fixture
def shop(db) -> dict[str, str]:
    """Six items; a and b are head (most interactions in the window); lists served under variant B and none."""
    do_upsert_items([
        {"item_id": i, "title": f"Item {i}", "category": "big" if i in "abf" else "small", "price": p}
        for i, p in PRICES.items()
    ])
    ExposurePolicy.objects.create(name="fair", is_default=True, head_share=0.34, head_window_days=30)
    ingest(*[(f"h{n}", i, "view", at(DAY1, 1) - timedelta(days=2), None, None) for n in range(5) for i in "ab"])
    r1 = serve("u1", "acd", at(DAY1, 9), variant="B")
    r2 = serve("u2", "be", at(DAY2, 10))
    r3 = serve("u3", "ac", at(DAY2, 11), variant="B")
    ingest(
        ("u1", "c", "click", at(DAY1, 9, 1), r1, None),
        ("u1", "c", "click", at(DAY1, 9, 2), r1, None),  # a double click counts once
        ("u1", "c", "purchase", at(DAY1, 9, 5), r1, 2),  # two pieces: revenue 11.00
        ("u2", "e", "click", at(DAY2, 10, 1), r2, None),
        ("u2", "e", "add_to_cart", at(DAY2, 10, 2), r2, None),
        ("u3", "f", "click", at(DAY2, 11, 1), r3, None),  # f was not in r3: not attributed
        ("u4", "f", "purchase", at(DAY2, 15), None, None),  # organic
        ("u3", "a", "click", at(TODAY, 8), r3, None),  # yesterday's list, clicked today
    )
    serve("u5", "bd", at(TODAY, 9))
    return {"r1": r1, "r2": r2, "r3": r3}


def snapshot() -> dict[tuple, tuple]:
    """Every count row, keyed by its dimensions."""
    return {
        (r.day, r.item.external_id, r.segment, r.variant, r.attributed): (
            r.impressions, r.clicks, r.add_to_carts, r.purchases, r.revenue,
        )
        for r in DailyItemCount.objects.select_related("item")
    }


def rollup_matches_items() -> bool:
    """The per-segment rollup holds exactly the sums of the item rows."""
    summed: dict[tuple, list] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0)])
    for (day, _, seg, variant, attributed), counts in snapshot().items():
        key = (day, seg, variant, attributed)
        summed[key] = [a + b for a, b in zip(summed[key], counts)]
    rollup = {
        (r.day, r.segment, r.variant, r.attributed): [r.impressions, r.clicks, r.add_to_carts, r.purchases, r.revenue]
        for r in DailySegmentCount.objects.all()
    }
    return rollup == dict(summed)


def direct_counts() -> dict[tuple, tuple]:
    """The same counts computed naively from raw events and served lists, for comparison."""
    lists = {s.request_id: s for s in ServedList.objects.all()}
    segments = {d: set(Item.objects.filter(pk__in=aggregation.head_item_ids(d)).values_list("external_id", flat=True))
                for d in (DAY1, DAY2, TODAY)}
    acc: dict[tuple, list] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0)])
    once: set = set()
    kinds = {EventType.IMPRESSION: 0, EventType.CLICK: 1, EventType.ADD_TO_CART: 2, EventType.PURCHASE: 3}
    for e in Event.objects.select_related("item").filter(event_type__in=list(kinds)):
        day = e.timestamp.astimezone(timezone.utc).date()
        sl = lists.get(e.request_id)
        attributed = sl is not None and e.item_id in sl.items
        variant = (sl.variant or None) if attributed else None
        seg = "head" if e.item.external_id in segments[day] else "tail"
        row = acc[(day, e.item.external_id, seg, variant, attributed)]
        if e.event_type == EventType.PURCHASE and e.item.price is not None:
            row[4] += Decimal(str(e.value or 1)) * e.item.price
        if attributed and e.event_type != EventType.IMPRESSION:
            if (e.request_id, e.item_id, e.event_type) in once:
                continue
            once.add((e.request_id, e.item_id, e.event_type))
        row[kinds[e.event_type]] += 1
    return {k: tuple(v) for k, v in acc.items()}


def test_counts_equal_a_direct_computation_from_raw_events(shop):
    result = do_aggregate_pending(NOW, lag=LAG)

    assert [(r.day, r.status) for r in result.filled] == [(DAY1, "filled"), (DAY2, "filled"), (TODAY, "partial")]
    assert snapshot() == direct_counts()
    assert rollup_matches_items()
    assert sum(r.events for r in result.filled) == Event.objects.exclude(event_type=EventType.VIEW).count()


def test_clicks_and_purchases_are_attributed_to_the_variant_of_their_list(shop):
    do_aggregate_pending(NOW, lag=LAG)
    rows = snapshot()

    # c was shown in r1 (variant B) and clicked twice, bought twice over.
    assert rows[(DAY1, "c", "tail", "B", True)] == (1, 1, 0, 1, Decimal("11.00"))
    # e's list was served outside the experiment: attributed, no variant.
    assert rows[(DAY2, "e", "tail", None, True)] == (1, 1, 1, 0, Decimal("0"))
    # A click on an item the list did not show, and an organic purchase, are not attributed.
    assert rows[(DAY2, "f", "tail", None, False)] == (0, 1, 0, 1, Decimal("100.00"))
    # Yesterday's list clicked today: counted today, still under its list's variant.
    assert rows[(TODAY, "a", "head", "B", True)] == (0, 1, 0, 0, Decimal("0"))
    assert rows[(DAY2, "a", "head", "B", True)][0] == 1


def test_running_twice_gives_the_same_counts(shop):
    do_aggregate_pending(NOW, lag=LAG)
    first = snapshot()

    again = do_aggregate_pending(NOW, lag=LAG)
    do_aggregate_day(DAY1, now=NOW, lag=LAG)

    assert snapshot() == first
    assert [r.day for r in again.filled] == [TODAY]  # finished days are not redone
    assert again.reopened == []
    states = dict(ReportDay.objects.values_list("day", "status"))
    assert states == {DAY1: "filled", DAY2: "filled", TODAY: "partial"}


def test_a_crash_mid_day_keeps_the_old_rows_and_the_next_run_resumes(shop, monkeypatch):
    do_aggregate_pending(NOW, lag=LAG)
    before = snapshot()
    ingest(("u9", "d", "purchase", at(DAY2, 20), None, 3))  # late: re-opens DAY2
    real_insert = aggregation._insert_counts

    def insert_then_crash(day, *args):
        real_insert(day, *args)  # the day's new rows are written ...
        raise RuntimeError("worker killed")  # ... and the process dies before the commit

    monkeypatch.setattr(aggregation, "_insert_counts", insert_then_crash)
    with pytest.raises(RuntimeError):
        do_aggregate_pending(NOW, lag=LAG)

    assert snapshot() == before  # nothing half-written: DAY2 still holds its previous counts
    assert rollup_matches_items()
    assert ReportDay.objects.get(day=DAY2).status == "pending"  # and is still marked for a refill

    monkeypatch.setattr(aggregation, "_insert_counts", real_insert)
    resumed = do_aggregate_pending(NOW, lag=LAG)

    assert [r.day for r in resumed.filled] == [DAY2, TODAY]
    assert snapshot() == direct_counts() and rollup_matches_items()
    assert snapshot()[(DAY2, "d", "tail", None, False)] == (0, 0, 0, 1, Decimal("9.00"))


def test_a_first_run_that_crashes_keeps_the_days_before_and_resumes_at_the_failed_day(shop, monkeypatch):
    real_insert = aggregation._insert_counts

    def crash_on_day2(day, *args):
        if day == DAY2:
            raise RuntimeError("database went away")
        return real_insert(day, *args)

    monkeypatch.setattr(aggregation, "_insert_counts", crash_on_day2)
    with pytest.raises(RuntimeError):
        do_aggregate_pending(NOW, lag=LAG)
    assert dict(ReportDay.objects.values_list("day", "status")) == {DAY1: "filled"}
    assert not DailyItemCount.objects.filter(day=DAY2).exists()

    monkeypatch.setattr(aggregation, "_insert_counts", real_insert)
    resumed = do_aggregate_pending(NOW, lag=LAG)

    assert [r.day for r in resumed.filled] == [DAY2, TODAY]
    assert snapshot() == direct_counts()


def test_late_events_reopen_their_day_and_only_that_day(shop):
    do_aggregate_pending(NOW, lag=LAG)

    ingest(("u7", "b", "purchase", at(DAY1, 23, 59), None, None))
    second = do_aggregate_pending(NOW, lag=LAG)
    third = do_aggregate_pending(NOW, lag=LAG)

    assert second.reopened == [DAY1]
    assert [r.day for r in second.filled] == [DAY1, TODAY]
    assert snapshot()[(DAY1, "b", "head", None, False)] == (0, 0, 0, 1, Decimal("20.00"))
    assert snapshot() == direct_counts()
    assert third.reopened == [] and [r.day for r in third.filled] == [TODAY]


def test_yesterday_filled_while_partial_is_completed_the_next_day(shop):
    do_aggregate_pending(NOW - timedelta(days=1), lag=LAG)  # DAY2 was "today"
    assert ReportDay.objects.get(day=DAY2).status == "partial"

    result = do_aggregate_pending(NOW, lag=LAG)

    assert [r.day for r in result.filled] == [DAY2, TODAY]
    assert ReportDay.objects.get(day=DAY2).status == "filled"


def test_the_report_from_count_tables_matches_the_report_from_raw_rows(shop):
    do_aggregate_pending(NOW, lag=LAG)
    # Served lists logged segments that agree with the day's head here ('a', 'b' head), so both agree.
    raw = raw_reports.exposure_report(at(DAY1, 0), at(TODAY, 0))

    report = queries.exposure_report(DAY1, TODAY)

    for key in ("lists_served", "fallback_share", "impressions", "tail_share_of_impressions", "tail_share_of_conversions", "catalog_items",
                "items_shown", "catalog_coverage", "gini_of_exposure"):
        assert report[key] == raw[key], key
    for seg in ("head", "tail"):
        for key in ("impressions", "clicks", "purchases", "ctr", "conversion_rate"):
            assert report["by_segment"][seg][key] == raw["by_segment"][seg][key], (seg, key)
    assert report["by_variant"]["B"]["impressions"] == raw["by_variant"]["B"]["impressions"] == 5
    assert report["fill_state"]["filled"] == 2
    assert report["lorenz"][0] == (0.0, 0.0) and report["lorenz"][-1] == (1.0, 1.0)


def test_the_report_queries_read_the_count_tables(shop):
    do_aggregate_pending(NOW, lag=LAG)

    days = queries.daily_tail_shares(DAY1, TODAY + timedelta(days=1))
    assert [d["day"] for d in days] == [DAY1, DAY2, TODAY]
    assert days[0]["tail_share_of_impressions"] == pytest.approx(2 / 3, abs=1e-6)
    assert days[1]["tail_share_of_all_purchases"] == 1.0 and days[1]["conversions"] == 0

    never = queries.items_never_shown(DAY1, DAY2)
    assert never["count"] == 3 and {i["external_id"] for i in never["items"]} == {"b", "e", "f"}

    cats = {c["category"]: c for c in queries.category_table(DAY1, TODAY)}
    assert cats["big"]["catalog_items"] == 3 and cats["big"]["items_shown"] == 2
    assert cats["small"]["purchases"] == 1 and cats["small"]["revenue"] == Decimal("11.00")

    rates = {(r["segment"], r["variant"]): r for r in queries.rates_by_segment_and_variant(DAY1, TODAY)}
    assert rates[("tail", "B")]["ctr"] == pytest.approx(1 / 3, abs=1e-6)
    assert rates[("tail", None)]["add_to_cart_rate"] == 1.0

    with pytest.raises(ValueError, match="swap"):
        queries.exposure_report(TODAY, DAY1)


def test_the_beat_task_works_in_bounded_steps_and_queues_the_rest(shop, monkeypatch):
    from recommender.schedule import BEAT_SCHEDULE
    from recommender.tasks import aggregate_reports

    queued = []
    monkeypatch.setattr(aggregate_reports, "apply_async", lambda **kw: queued.append(kw))

    out = aggregate_reports.run(max_days=2)  # the real clock: every day from DAY1 to today is due

    assert out["filled"] == 2 and out["remaining"] > 0
    assert queued == [{"kwargs": {"max_days": 2}, "countdown": 1}]
    assert dict(ReportDay.objects.values_list("day", "status")) == {DAY1: "filled", DAY2: "filled"}
    assert BEAT_SCHEDULE["recommender-aggregate-reports"]["task"] == aggregate_reports.name
