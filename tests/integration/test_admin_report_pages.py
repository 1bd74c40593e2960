"""The "Long-tail exposure" and "Behaviour analysis" admin pages: figures, CSV exports, access, bad ranges.

The expected figures are worked out from the test data itself (see ``report_pages_data``),
not read back from the report queries the pages use.
"""
from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import numpy as np
import pytest

from recommender.ingestion import do_upsert_items
from recommender.models import ExposurePolicy, ModelVersion, Promotion
from recommender.ml.base import EVENT_CODES

from recommender.reports.aggregation import do_aggregate_day

from .report_pages_data import HEAD, at, ingest, make_behaviour_shop, make_exposure_shop

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
EXPOSURE = "/admin/insights/exposure/"
BEHAVIOUR = "/admin/insights/behaviour/"


class Marks(HTMLParser):
    """Every element's attributes, with the ``data-chart`` of the SVG it sits in."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[dict] = []
        self._chart: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self._chart = a.get("data-chart")
        self.elements.append({"tag": tag, "chart": self._chart, **a})

    def handle_endtag(self, tag):
        if tag == "svg":
            self._chart = None

    def cards(self) -> dict[str, str]:
        return {e["data-card"]: e["data-value"] for e in self.elements if "data-card" in e}

    def points(self, chart: str, series: str | None = None) -> dict[str, float]:
        """x -> value of the line chart's circles (of one series)."""
        return {
            e["data-x"]: float(e["data-value"]) for e in self.elements
            if e["chart"] == chart and e["tag"] == "circle" and (series is None or e.get("data-series") == series)
        }

    def bars(self, chart: str) -> dict[str, float]:
        return {e["data-label"]: float(e["data-value"]) for e in self.elements if e["chart"] == chart and e["tag"] == "rect"}


def gini(x: list[float]) -> float:
    """Mean absolute difference over twice the mean (the textbook definition, not the sorted-rank formula)."""
    x = np.asarray(x, dtype=float)
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean()))


def read_csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(user)
    return client


@pytest.fixture
def shop(db):
    return make_exposure_shop(NOW)


def span(shop) -> dict[str, str]:
    return {"from": shop.day1.isoformat(), "to": shop.today.isoformat()}


# ------------------------------------------------------------------ exposure


def test_exposure_page_shows_the_figures_of_the_test_data(staff, shop):
    r = staff.get(EXPOSURE, span(shop))
    assert r.status_code == 200
    marks = Marks(r.content.decode())

    shown = shop.impressions_by_item()
    total = sum(shown.values())
    tail = sum(n for i, n in shown.items() if i not in HEAD)
    cards = marks.cards()
    assert int(cards["impressions"]) == total == 9
    assert float(cards["tail_share_of_impressions"]) == pytest.approx(tail / total, abs=1e-6)
    assert float(cards["tail_share_of_conversions"]) == 1.0  # the one recommended purchase was c, a tail item
    assert float(cards["catalog_coverage"]) == pytest.approx(5 / 7, abs=1e-6)
    assert float(cards["gini_of_exposure"]) == pytest.approx(gini(list(shown.values())), abs=1e-6)
    assert int(cards["items_never_shown"]) == 2  # f and g
    assert int(cards["fill_state"]) == 2  # day 1 and 2 filled; today is partial
    assert "2 of 3 days" in r.content.decode() and "1 partial" in r.content.decode()
    assert 'id="fill-warning"' not in r.content.decode()

    assert marks.points("tail-share-daily", "impressions") == {
        d.isoformat(): pytest.approx(shop.tail_share_of_impressions(d), abs=1e-6) for d in shop.days
    }
    # Conversions: only day 1 had a recommended purchase; the other days are gaps, not zeros.
    assert marks.points("tail-share-daily", "conversions (recommended purchases)") == {shop.day1.isoformat(): 1.0}
    # f was bought outside recommendations on day 2: a purchase, not a conversion.
    assert marks.points("tail-share-daily", "all purchases") == {shop.day1.isoformat(): 1.0, shop.day2.isoformat(): 1.0}
    assert marks.points("coverage-daily") == {
        d.isoformat(): pytest.approx(len(set("".join(shop.served[d]))) / 7, abs=1e-6) for d in shop.days
    }
    gini_mark = next(e for e in marks.elements if e.get("class") == "gini")
    assert float(gini_mark["data-value"]) == pytest.approx(gini(list(shown.values())), abs=1e-6)
    lorenz = marks.points("lorenz")
    assert lorenz["0.0"] == 0.0 and lorenz["1.0"] == 1.0


def test_impressions_logged_outside_recommendation_lists_count_as_exposure(staff, shop):
    # The shop logs one impression of g itself (no request id), on day 2.
    ingest(NOW, ("u9", "g", "impression", at(shop.day2, 18), None, None))
    do_aggregate_day(shop.day2, now=NOW, lag=timedelta(0))
    marks = Marks(staff.get(EXPOSURE, span(shop)).content.decode())
    cards = marks.cards()
    assert int(cards["impressions"]) == 10 and int(cards["items_never_shown"]) == 1
    assert float(cards["tail_share_of_impressions"]) == pytest.approx(6 / 10)
    assert marks.points("tail-share-daily", "impressions")[shop.day2.isoformat()] == pytest.approx(3 / 5)
    assert "9 in 4 recommendation lists" in staff.get(EXPOSURE, span(shop)).content.decode()


def test_exposure_tables_export_as_csv(staff, shop):
    never = read_csv(staff.get(EXPOSURE, {**span(shop), "csv": "never-shown"}))
    assert sorted(r["external_id"] for r in never) == ["f", "g"]

    categories = {r["category"]: r for r in read_csv(staff.get(EXPOSURE, {**span(shop), "csv": "categories"}))}
    assert set(categories) == {"big", "small"}
    assert (categories["big"]["catalog_items"], categories["big"]["impressions"], categories["big"]["clicks"]) == ("3", "4", "1")
    assert float(categories["big"]["tail_share_of_impressions"]) == 0.0
    assert (categories["small"]["catalog_items"], categories["small"]["impressions"]) == ("4", "5")
    assert categories["small"]["clicks"] == "2"  # c's double click counts once, plus e
    assert float(categories["small"]["tail_share_of_impressions"]) == 1.0
    assert float(categories["small"]["revenue"]) == 11.0 and float(categories["big"]["revenue"]) == 100.0

    daily = read_csv(staff.get(EXPOSURE, {**span(shop), "csv": "tail-share-daily"}))
    assert [r["x"] for r in daily] == [d.isoformat() for d in shop.days]
    assert [float(r["s0"]) for r in daily] == pytest.approx([shop.tail_share_of_impressions(d) for d in shop.days])
    assert [r["s1"] for r in daily] == ["1.0", "1.0", ""]  # all purchases: c on day 1, f on day 2
    assert [r["s2"] for r in daily] == ["1.0", "", ""]  # conversions: c on day 1 only


def test_promotions_compare_the_promoted_days_with_the_days_before(staff, shop):
    r = staff.get(EXPOSURE, {**span(shop), "csv": "promotions"})
    promos = {row["target"]: row for row in read_csv(r)}
    # The promotion long before the range is left out.
    assert set(promos) == {"item e", "category small"}
    e = promos["item e"]
    assert (e["days"], e["during_from"]) == ("1", shop.day2.isoformat())
    assert float(e["impressions_per_day_before"]) == 0.0 and float(e["impressions_per_day_during"]) == 1.0
    assert e["lift_impressions"] == ""  # nothing before: no ratio
    small = promos["category small"]
    # Day 2 and today (the range ends today); before: the two days up to day 1.
    assert small["days"] == "2" and small["before_from"] == (shop.day1 - timedelta(days=1)).isoformat()
    assert float(small["impressions_per_day_during"]) == 1.5  # c, e on day 2; d today
    assert float(small["impressions_per_day_before"]) == 1.0  # c, d on day 1
    assert float(small["lift_impressions"]) == pytest.approx(0.5)
    assert float(small["clicks_per_day_before"]) == 0.5 and float(small["clicks_per_day_during"]) == 0.5
    assert float(small["revenue_per_day_before"]) == 5.5

    marks = Marks(staff.get(EXPOSURE, span(shop)).content.decode())
    bars = marks.bars("promotion-impressions")
    assert bars[f"#{e['promotion']} item e · during"] == 1.0
    assert bars[f"#{small['promotion']} category small · before"] == 1.0


def test_the_page_makes_as_many_queries_for_many_promotions_and_days_as_for_few(staff, shop, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        assert staff.get(EXPOSURE, span(shop)).status_code == 200
    policy = ExposurePolicy.objects.get()
    for n in range(10):
        Promotion.objects.create(policy=policy, category="big", boost=0.1 * n, starts_at=datetime.combine(
            shop.day1, datetime.min.time(), tzinfo=timezone.utc) - timedelta(days=n))
    longer = {"from": (shop.day1 - timedelta(days=60)).isoformat(), "to": shop.today.isoformat()}
    with django_assert_max_num_queries(len(few.captured_queries)):
        html = staff.get(EXPOSURE, longer).content.decode()
    assert html.count("category big") >= 10


def test_the_page_lists_the_oldest_never_shown_items_and_the_csv_all_of_them(staff, shop):
    do_upsert_items([{"item_id": f"new-{n:03d}", "title": f"New {n}"} for n in range(105)])
    html = staff.get(EXPOSURE, span(shop)).content.decode()
    assert "Items never shown (107)" in html
    table = html.split('data-table="never-shown"')[1].split("</table>")[0]
    assert table.count("<tr>") == 1 + 100  # header + the first 100
    assert len(read_csv(staff.get(EXPOSURE, {**span(shop), "csv": "never-shown"}))) == 107


def test_days_not_aggregated_yet_are_flagged_but_days_before_any_event_are_not(staff, shop):
    # The job last ran on the data's "today"; the two days after it (long past by the real clock) have no counts.
    later = {"from": shop.day1.isoformat(), "to": (shop.today + timedelta(days=2)).isoformat()}
    html = staff.get(EXPOSURE, later).content.decode()
    assert 'id="fill-warning"' in html and "2 not aggregated yet" in html
    # The job starts at the first impression, click, cart or purchase (day 1): earlier days are no gap.
    earlier = {"from": (shop.day1 - timedelta(days=10)).isoformat(), "to": shop.today.isoformat()}
    html = staff.get(EXPOSURE, earlier).content.decode()
    assert 'id="fill-warning"' not in html and "10 before the first event" in html


def test_each_day_stores_how_many_items_it_showed(shop):
    from recommender.models import ReportDay

    stored = dict(ReportDay.objects.values_list("day", "items_shown"))
    assert stored == {d: len(set("".join(shop.served[d]))) for d in shop.days} == {
        shop.day1: 3, shop.day2: 4, shop.today: 2}


def test_days_filled_before_items_shown_existed_show_the_same_coverage_until_the_job_backfills_them(staff, shop):
    from recommender.models import ReportDay
    from recommender.reports.aggregation import do_aggregate_pending, do_backfill_items_shown

    before = Marks(staff.get(EXPOSURE, span(shop)).content.decode()).points("coverage-daily")
    ReportDay.objects.update(items_shown=None)  # as the 0006 migration leaves days filled before it

    assert Marks(staff.get(EXPOSURE, span(shop)).content.decode()).points("coverage-daily") == before
    assert do_backfill_items_shown(max_days=1) == 1  # bounded, oldest first
    assert ReportDay.objects.get(day=shop.day1).items_shown == 3
    assert ReportDay.objects.filter(items_shown=None).count() == 2
    do_aggregate_pending(NOW, lag=timedelta(0))  # the beat job sets the rest
    assert dict(ReportDay.objects.values_list("day", "items_shown")) == {shop.day1: 3, shop.day2: 4, shop.today: 2}
    assert do_backfill_items_shown() == 0
    assert Marks(staff.get(EXPOSURE, span(shop)).content.decode()).points("coverage-daily") == before


def test_the_page_reads_the_item_rows_of_the_range_once(staff, shop):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    longer = {"from": (shop.day1 - timedelta(days=30)).isoformat(), "to": shop.today.isoformat()}
    for query in (span(shop), longer):
        with CaptureQueriesContext(connection) as page:
            assert staff.get(EXPOSURE, query).status_code == 200
        sqls = [q["sql"] for q in page.captured_queries]
        item_rows = [q for q in sqls if "recommender_dailyitemcount" in q or "recommender_weeklyitemcount" in q]
        # The promotions' queries read only their target items' rows (an item id list, a category join).
        whole_range = [q for q in item_rows if '"item_id" IN' not in q and 'JOIN "recommender_item"' not in q]
        assert len(whole_range) == 1, whole_range
        assert not [q for q in sqls if "COUNT(DISTINCT" in q or "NOT EXISTS" in q]
    # The longer range holds whole weeks: those come from the weekly rollup, the days at its ends from day rows.
    assert "recommender_weeklyitemcount" in whole_range[0] and "recommender_dailyitemcount" in whole_range[0]


def _sums_from_day_rows(start, end) -> dict[int, tuple]:
    """Per item pk: (impressions, tail impressions, attributed clicks, carts, purchases, revenue) from the day rows."""
    from decimal import Decimal

    from recommender.models import DailyItemCount

    out: dict[int, list] = {}
    for r in DailyItemCount.objects.filter(day__gte=start, day__lt=end):
        acc = out.setdefault(r.item_id, [0, 0, 0, 0, 0, Decimal(0)])
        acc[0] += r.impressions
        acc[1] += r.impressions if r.segment == "tail" else 0
        if r.attributed:
            acc[2] += r.clicks
            acc[3] += r.add_to_carts
            acc[4] += r.purchases
        acc[5] += r.revenue
    return {pk: tuple(v) for pk, v in out.items()}


def _totals_as_dict(totals) -> dict[int, tuple]:
    from decimal import Decimal

    return {
        int(pk): (int(i), int(t), int(c), int(a), int(p), Decimal(int(cents)).scaleb(-2))
        for pk, i, t, c, a, p, cents in zip(totals.item, totals.impressions, totals.tail_impressions, totals.clicks,
                                            totals.add_to_carts, totals.purchases, totals.revenue_cents)
    }


@pytest.mark.parametrize("before, after", [(0, 1), (1, 1), (9, 1), (20, 6), (15, 0)])
def test_item_totals_over_whole_weeks_and_loose_days_equal_the_sums_of_the_day_rows(shop, before, after):
    from recommender.reports import queries

    # Late purchase on day 1, refilled: the weekly rollup of day 1's week must follow the refill.
    ingest(NOW, ("u8", "d", "purchase", at(shop.day1, 20), None, 2))
    do_aggregate_day(shop.day1, now=NOW, lag=timedelta(0))
    start, end = shop.day1 - timedelta(days=before), shop.today + timedelta(days=after)

    totals = queries.item_totals(start, end)

    expected = _sums_from_day_rows(start, end)
    assert _totals_as_dict(totals) == expected
    # 9 impressions, 7 before today; revenue: c 11.00 and d 6.00 on day 1, f 100.00 on day 2.
    assert sum(v[0] for v in expected.values()) == (9 if after else 7) and sum(v[5] for v in expected.values()) == 117
    assert queries.item_exposure(start, end) == {pk: v[0] for pk, v in expected.items() if v[0]}


def test_the_weekly_rollup_is_the_sum_of_its_days(shop):
    from recommender.models.reports import WeeklyItemCount
    from recommender.reports.aggregation import week_of

    weeks = sorted(set(WeeklyItemCount.objects.values_list("week", flat=True)))
    assert weeks == sorted({week_of(d) for d in shop.days}) and all(w.weekday() == 0 for w in weeks)
    for week in weeks:
        stored = {r.item_id: (r.impressions, r.tail_impressions, r.clicks, r.add_to_carts, r.purchases, r.revenue)
                  for r in WeeklyItemCount.objects.filter(week=week)}
        assert stored == _sums_from_day_rows(week, week + timedelta(days=7)), week


def test_the_migration_builds_the_weekly_rollup_of_days_filled_before_it(shop):
    import importlib
    from types import SimpleNamespace

    from django.apps import apps
    from django.db import connection

    from recommender.models.reports import WeeklyItemCount

    def rows():
        return sorted(WeeklyItemCount.objects.values_list(
            "week", "item_id", "impressions", "tail_impressions", "clicks", "add_to_carts", "purchases", "revenue"))

    built_by_fills = rows()
    WeeklyItemCount.objects.all().delete()
    migration = importlib.import_module("recommender.migrations.0006_reportday_items_shown")
    # What RunPython hands over, minus DDL (SQLite allows no schema editor inside the test's transaction).
    editor = SimpleNamespace(connection=connection, execute=lambda sql: connection.cursor().execute(sql))
    migration.backfill_weeks(apps, editor)
    assert rows() == built_by_fills and len(built_by_fills) >= 5


@pytest.mark.parametrize(
    "start, end, weeks, days",
    [
        ("2026-03-02", "2026-03-16", ("2026-03-02", "2026-03-16"), []),  # Monday to Monday: two whole weeks
        ("2026-03-04", "2026-03-09", None, [("2026-03-04", "2026-03-09")]),  # no whole week
        ("2026-03-04", "2026-03-18", ("2026-03-09", "2026-03-16"),
         [("2026-03-04", "2026-03-09"), ("2026-03-16", "2026-03-18")]),
        ("2026-03-04", "2026-03-04", None, []),
    ],
)
def test_a_range_splits_into_whole_weeks_and_loose_days(start, end, weeks, days):
    from datetime import date

    from recommender.reports.queries import whole_weeks

    d = date.fromisoformat
    got = whole_weeks(d(start), d(end))
    assert got == (weeks and (d(weeks[0]), d(weeks[1])), [(d(a), d(b)) for a, b in days])


def test_never_shown_items_from_the_per_item_sums_match_the_not_exists_query(shop):
    from recommender.ingestion.items import do_delete_item
    from recommender.models import Item
    from recommender.reports import queries

    do_upsert_items([{"item_id": f"new-{n}", "title": f"New {n}", "category": "small"} for n in range(3)])
    Item.objects.filter(external_id="new-1").update(is_active=False)  # not recommendable: not a gap
    do_delete_item("c")  # shown, then deleted: its rows stay, it is no longer in the catalog
    start, end = shop.day1, shop.today + timedelta(days=1)
    totals, catalog = queries.item_totals(start, end), queries.catalog_items()
    for limit in (1, 3, 100, None):
        fast = queries.items_never_shown(start, end, limit, totals=totals, catalog=catalog)
        assert fast == queries.items_never_shown(start, end, limit), limit
    assert [i["external_id"] for i in fast["items"]] == ["f", "g", "new-0", "new-2"] and fast["count"] == 4


def test_the_category_table_folds_per_item_sums_into_current_categories():
    from decimal import Decimal

    from recommender.reports.queries import Catalog, ItemTotals, fold_by_category

    catalog = Catalog(
        item=np.array([5, 3, 9, 7]), category=["toys", "books", "toys", "old"],
        eligible=np.array([True, True, False, False]),  # 9 is out of stock, 7 deleted
    )
    totals = ItemTotals(
        item=np.array([3, 9, 5, 4]),  # 4: rows of an item no longer in the catalog
        impressions=np.array([10, 4, 0, 2]), tail_impressions=np.array([10, 1, 0, 0]),
        clicks=np.array([1, 2, 0, 0]), add_to_carts=np.array([0, 1, 0, 0]), purchases=np.array([1, 1, 1, 0]),
        revenue_cents=np.array([1999, 1, 500, 0]),
    )
    rows = {r["category"]: r for r in fold_by_category(totals, catalog)}

    assert [r["category"] for r in fold_by_category(totals, catalog)] == ["books", "toys", ""]  # by impressions
    assert "old" not in rows  # no rows and nothing recommendable in it
    toys = rows["toys"]
    assert (toys["catalog_items"], toys["items_shown"], toys["impressions"], toys["clicks"]) == (1, 1, 4, 2)
    assert toys["tail_share_of_impressions"] == 0.25 and toys["ctr"] == 0.5 and toys["purchases"] == 2
    assert toys["revenue"] == Decimal("5.01")
    assert rows["books"]["revenue"] == Decimal("19.99") and rows["books"]["conversion_rate"] == 0.1
    assert (rows[""]["catalog_items"], rows[""]["items_shown"], rows[""]["impressions"]) == (0, 1, 2)
    # A category with count rows but no impressions: shown 0, no tail share rather than 0 %.
    empty = fold_by_category(ItemTotals(*(np.array([5]) if n == 0 else np.array([0]) for n in range(7))), catalog)
    assert {r["category"]: (r["items_shown"], r["tail_share_of_impressions"]) for r in empty} == {
        "toys": (0, None), "books": (0, None)}


@pytest.mark.parametrize(
    "query, message",
    [
        ({"from": "yesterday"}, "Dates must look like 2026-01-31"),
        ({"from": "2026-03-10", "to": "2026-03-01"}, "swap them"),
        ({"from": "2020-01-01", "to": "2026-03-01"}, "narrow"),
    ],
)
def test_a_bad_range_shows_what_to_change(staff, db, query, message):
    r = staff.get(EXPOSURE, query)
    assert r.status_code == 200
    html = r.content.decode()
    assert message in html and 'class="errornote"' in html


def test_an_unknown_csv_table_is_a_400_naming_the_tables(staff, db):
    r = staff.get(EXPOSURE, {"csv": "nope"})
    assert r.status_code == 400 and b"never-shown" in r.content


@pytest.mark.parametrize("url", [EXPOSURE, BEHAVIOUR])
def test_non_staff_are_sent_to_the_login(client, django_user_model, url, db):
    r = client.get(url)
    assert r.status_code == 302 and r["Location"].startswith("/admin/login/")
    client.force_login(django_user_model.objects.create_user("shopper", password="pw"))
    r = client.get(url, {"csv": "segments"})
    assert r.status_code == 302 and r["Location"].startswith("/admin/login/")


def test_the_index_links_both_pages(staff):
    html = staff.get("/admin/").content.decode()
    assert f'href="{EXPOSURE}"' in html and f'href="{BEHAVIOUR}"' in html


# ------------------------------------------------------------------ behaviour


@pytest.fixture
def trained(settings, tmp_path, db):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "ARTIFACT_DIR": str(tmp_path / "artifacts")}
    return make_behaviour_shop(datetime.now(timezone.utc))


def test_behaviour_page_says_how_to_get_a_model_when_there_is_none(staff):
    html = staff.get(BEHAVIOUR).content.decode()
    assert 'id="no-behaviour"' in html and "manage.py train" in html


def test_behaviour_page_shows_the_figures_of_the_events(staff, trained):
    events, version = trained
    r = staff.get(BEHAVIOUR)
    assert r.status_code == 200
    html = r.content.decode()
    assert version.name in html
    marks = Marks(html)

    by_type = Counter(t for _, _, t, _ in events)
    assert marks.bars("event-types") == {name: by_type.get(name, 0) for name in EVENT_CODES}
    assert list(marks.bars("event-types")) == list(EVENT_CODES)  # in the types' order, whatever JSON did to it
    # Deepest funnel stage per shopper: u1, u2, u5 purchase; u3 click; u4 view.
    assert marks.bars("funnel") == {"view": 5, "click": 4, "add_to_cart": 3, "purchase": 3}
    cards = marks.cards()
    assert int(cards["events"]) == len(events)
    assert float(cards["purchase_conversion"]) == pytest.approx(3 / 5)
    assert float(cards["repeat_user_rate"]) == pytest.approx(1 / 3)  # u1 bought again on a later day; u2 the same day
    # Interactions (not impressions) in the last 30 days: i0 7, i1 3, i2 1, i3 1; the head is 20% of 10 items.
    assert int(cards["head_cut"]) == 2
    assert "head: top 2 items" in html and "83.3%" in html  # 10 of 12 interactions
    assert int(cards["segments"]) == 2
    # Active shoppers per day: one point per day from the first to the last active day.
    days = Counter()
    for user_day in {(u, ts.date()) for u, _, t, ts in events if t != "impression"}:
        days[user_day[1].isoformat()] += 1
    points = marks.points("active-daily")
    assert {d: v for d, v in points.items() if v} == dict(days)


def test_behaviour_tables_export_as_csv(staff, trained):
    top = read_csv(staff.get(BEHAVIOUR, {"csv": "top-items"}))
    assert [(r["item_id"], r["title"], r["count"], r["segment"]) for r in top] == [
        ("i0", "Thing i0", "7", "head"), ("i1", "Thing i1", "3", "head"),
        ("i2", "Thing i2", "1", "tail"), ("i3", "Thing i3", "1", "tail"),
    ]
    segments = read_csv(staff.get(BEHAVIOUR, {"csv": "segments"}))
    assert [(r["index"], r["label"], r["size"], r["top_terms"]) for r in segments] == [
        ("0", "toys, thing", "3", "toys, thing"), ("1", "books", "2", "books"),
    ]
    assert float(segments[0]["share"]) == pytest.approx(0.6)
    repeat = read_csv(staff.get(BEHAVIOUR, {"csv": "repeat-purchases"}))
    assert [r["count"] for r in repeat] == ["3", "1", "3", "1"]  # u1/i0, u2/i1, u5/i3 pairs; u1/i0 again
    funnel = read_csv(staff.get(BEHAVIOUR, {"csv": "funnel-detail"}))
    assert [r["users"] for r in funnel] == ["5", "4", "3", "3"]


def test_a_version_without_a_summary_says_to_retrain(staff, db):
    ModelVersion.objects.create(name="old-v1", kind="ease", status="ready", is_active=True, metrics={})
    html = staff.get(BEHAVIOUR).content.decode()
    assert "old-v1" in html and "trained before behaviour summaries" in html


# ------------------------------------------------------------------ promotion windows


@pytest.mark.parametrize(
    "starts, ends, expected",
    [
        # Touches days 3 to 5 (ends at 00:00 of day 6, exclusive); before: days 0 to 2.
        ((3, 6), (6, 0), (("03", "06"), ("00", "03"))),
        # Started before the range and still running: measured over the 9 days of the range, compared with
        # the 9 days before it started (not before the range).
        ((-6, 0), None, (("01", "10"), ("-15", "-6"))),
        # No start: nothing to compare with.
        (None, (4, 12), (("01", "05"), None)),
        # Ended before the range: not shown.
        ((-20, 0), (-10, 0), None),
    ],
)
def test_a_promotion_is_measured_on_the_days_it_touches_inside_the_range(starts, ends, expected):
    from types import SimpleNamespace

    from recommender.reports.queries import promotion_windows

    base = datetime(2026, 5, 1, tzinfo=timezone.utc)  # day "01"; the range is days 01 to 09

    def moment(spec):
        return None if spec is None else base + timedelta(days=spec[0] - 1, hours=spec[1])

    def day(label: str):
        return (base + timedelta(days=int(label) - 1)).date()

    got = promotion_windows(SimpleNamespace(starts_at=moment(starts), ends_at=moment(ends)), day("01"), day("10"))
    if expected is None:
        assert got is None
    else:
        during, before = expected
        assert got == ((day(during[0]), day(during[1])), before and (day(before[0]), day(before[1])))
