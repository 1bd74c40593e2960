"""Report aggregation on PostgreSQL: one day of ~1,000,000 events into the count tables, then the
exposure report over 90 days (10,000,000 impression events) from the count tables, against
the same report computed from raw rows (``recommender.serving.reports``) as the baseline, and
the admin "Long-tail exposure" page over the same 90 days (a staff user's GET through Django's
test client: every query, the numpy work and the template, without a web server).

    python bench/reports.py [--database-url URL] [--impressions N] [--days N] [--day-events N]
                            [--rounds N] [--json PATH]

Targets on a 2-core machine: one day of 1M events aggregated in under 30 s; the 90-day
report from the count tables, and the admin page over it, in under 1 s. Data is generated inside PostgreSQL
(``INSERT ... SELECT generate_series``): lists of 10 items from a skewed catalog, one
impression event per position, ~3 % clicks and ~0.5 % purchases attributed to their
list, and organic views that make the head.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import bench_env, fresh_database, machine, median, print_table, write_json  # noqa: E402

LIST_LEN = 10
N_ITEMS = 20_000
N_USERS = 100_000

# One block of traffic: %(lists)s lists spread evenly over [%(t0)s, %(t0)s + %(span)s seconds).
# The slots table holds (list, position, item); items are skewed to low ids (u**3), as shops are.
_SLOTS = """
DROP TABLE IF EXISTS bench_slot;
CREATE UNLOGGED TABLE bench_slot AS
SELECT n, pos, %(item0)s + floor(%(n_items)s * power(random(), 3))::bigint AS item_id,
       %(t0)s::timestamptz + ((n - %(first)s) * %(span)s / %(lists)s) * interval '1 second' AS ts
FROM generate_series(%(first)s, %(first)s + %(lists)s - 1) AS n, generate_series(0, 9) AS pos;
"""
_LISTS = """
INSERT INTO recommender_servedlist
    (request_id, served_at, endpoint, user_external_id, variant, policy, model_version, fallback, items, segments)
SELECT md5(n::text)::uuid, min(ts), 'user', 'user-' || (n %% %(n_users)s),
       CASE n %% 3 WHEN 0 THEN '' WHEN 1 THEN 'A' ELSE 'B' END, 'fair', 'v1', '',
       jsonb_agg(item_id ORDER BY pos), repeat('t', 10)
FROM bench_slot GROUP BY n;
"""
_EVENTS = """
INSERT INTO recommender_event (user_id, item_id, event_type, value, query, request_id, timestamp, ingested_at)
SELECT %(user0)s + n %% %(n_users)s, item_id, 7, pos + 1, '', md5(n::text)::uuid, ts, ts + interval '1 minute'
FROM bench_slot
UNION ALL
SELECT %(user0)s + n %% %(n_users)s, item_id, 3, NULL, '', md5(n::text)::uuid, ts + interval '30 seconds', ts
FROM bench_slot WHERE random() < 0.03
UNION ALL
SELECT %(user0)s + n %% %(n_users)s, item_id, 5, 1 + floor(random() * 3), '', md5(n::text)::uuid,
       ts + interval '5 minutes', ts
FROM bench_slot WHERE random() < 0.005
UNION ALL
SELECT %(user0)s + (n * 7) %% %(n_users)s, %(item0)s + floor(%(n_items)s * power(random(), 2))::bigint, 1,
       NULL, '', NULL, ts, ts
FROM bench_slot WHERE random() < %(views)s;
"""


def generate(cur, *, t0: datetime, span_s: float, lists: int, first: int, views: float, ids: dict) -> None:
    """Insert one block of served lists and their events, all in SQL."""
    params = {**ids, "t0": t0, "span": span_s, "lists": lists, "first": first, "views": views,
              "n_items": N_ITEMS, "n_users": N_USERS}
    for sql in (_SLOTS, _LISTS, _EVENTS):
        for statement in filter(str.strip, sql.split(";")):
            cur.execute(statement, params)


def timed(fn, rounds: int) -> tuple[list[float], object]:
    out, times = None, []
    for _ in range(rounds):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def timed_admin_page(first: date, end: date, rounds: int) -> tuple[list[float], dict[str, str]]:
    """Median-able timings of GET /admin/insights/exposure/ over [first, end) as a staff user; and its cards."""
    import re

    from django.contrib.auth import get_user_model
    from django.test import Client, override_settings

    staff = get_user_model().objects.create_user("bench-staff", password=None, is_staff=True)
    client = Client()
    client.force_login(staff)
    query = {"from": first.isoformat(), "to": (end - timedelta(days=1)).isoformat()}
    # Plain static storage: the bench has no collectstatic manifest, and static URLs are not what is measured.
    static = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    from django.conf import settings

    with override_settings(STORAGES={**settings.STORAGES, "staticfiles": static}):
        client.get("/admin/insights/exposure/", query)  # warm-up: templates compiled, session loaded

        def get():
            response = client.get("/admin/insights/exposure/", query)
            if response.status_code != 200:
                raise SystemExit(f"admin exposure page answered {response.status_code}: {response.content[:500]!r}")
            return response.content.decode()

        times, html = timed(get, rounds)
    cards = dict(re.findall(r'data-card="([a-z_]+)" data-value="([^"]*)"', html))
    return times, {k: cards[k] for k in ("impressions", "catalog_coverage", "gini_of_exposure")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default=os.environ.get(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/shop_recs_reportbench"))
    ap.add_argument("--impressions", type=int, default=10_000_000, help="impression events over the report period")
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--day-events", type=int, default=1_000_000, help="events of the one dense day")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline-rounds", type=int, default=1)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    url = fresh_database(args.database_url)
    os.environ.update(bench_env(url))
    import django

    django.setup()
    from django.db import connection

    from recommender.models import DailyItemCount, Event, ExposurePolicy, ReportDay
    from recommender.reports import queries
    from recommender.reports.aggregation import day_bounds, do_aggregate_day, do_aggregate_pending
    from recommender.serving import reports as raw_reports

    first_day = date(2026, 1, 1)
    dense_day = first_day + timedelta(days=args.days)
    now = datetime.combine(dense_day + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
    t_gen = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO recommender_item (external_id, title, description, category, brand, price, attributes,"
            " is_active, in_stock, is_placeholder, text_hash, created_at, updated_at) "
            "SELECT 'sku-' || g, 'Item ' || g, '', 'c' || (g %% 50), '', (1 + g %% 200)::numeric, '{}',"
            " true, true, false, '', %s, %s FROM generate_series(1, %s) g",
            [now, now, N_ITEMS],
        )
        cur.execute(
            "INSERT INTO recommender_shopuser (external_id, created_at) "
            "SELECT 'user-' || g, %s FROM generate_series(0, %s - 1) g", [now, N_USERS]
        )
        cur.execute("SELECT min(id) FROM recommender_item")
        item0 = cur.fetchone()[0]
        cur.execute("SELECT min(id) FROM recommender_shopuser")
        ids = {"item0": item0, "user0": cur.fetchone()[0]}
        period_lists = args.impressions // LIST_LEN
        generate(cur, t0=day_bounds(first_day)[0], span_s=args.days * 86_400.0, lists=period_lists, first=1,
                 views=0.05, ids=ids)
        # The dense day: ~80 % impressions, then clicks, purchases and views.
        dense_lists = int(args.day_events / (LIST_LEN * 1.235))
        generate(cur, t0=day_bounds(dense_day)[0], span_s=86_400.0, lists=dense_lists, first=period_lists + 1,
                 views=0.2, ids=ids)
        cur.execute("DROP TABLE bench_slot")
    ExposurePolicy.objects.create(name="fair", is_default=True)
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    t_gen = time.perf_counter() - t_gen
    start, end = day_bounds(dense_day)
    n_dense = Event.objects.filter(timestamp__gte=start, timestamp__lt=end).count()
    period_end = day_bounds(first_day + timedelta(days=args.days))[0]
    n_imp = Event.objects.filter(event_type=7, timestamp__lt=period_end).count()
    print(f"generated {Event.objects.count():,} events ({n_imp:,} impressions over {args.days} days,"
          f" {n_dense:,} on the dense day) in {t_gen:.0f} s")

    rows, results = [], {"machine": machine(), "events": Event.objects.count(), "dense_day_events": n_dense,
                         "period_impressions": n_imp}

    # 1. One day of ~1M events (rounds re-run it: every fill replaces the day).
    day_times, day = timed(lambda: do_aggregate_day(dense_day, now=now), max(1, args.rounds // 2))
    rows.append([f"aggregate 1 day ({n_dense:,} events)", median(day_times), min(day_times), day.rows, "< 30 s"])
    results["aggregate_day_s"] = day_times

    # 2. The backlog of the period, as the first beat run after installing would do it.
    t = time.perf_counter()
    backlog = do_aggregate_pending(now)
    backlog_s = time.perf_counter() - t
    per_day = backlog_s / max(1, len(backlog.filled))
    rows.append([f"aggregate pending ({len(backlog.filled)} days)", backlog_s, per_day, DailyItemCount.objects.count(),
                 "per day in 'min'"])
    results["aggregate_backlog_s"] = backlog_s
    assert ReportDay.objects.filter(status="filled").count() >= args.days

    # 3. The 90-day report: count tables vs raw rows.
    p0, p1 = first_day, first_day + timedelta(days=args.days)
    with connection.cursor() as cur:
        cur.execute("ANALYZE recommender_dailyitemcount")
    report_times, report = timed(lambda: queries.exposure_report(p0, p1), args.rounds)
    page_times, page = timed_admin_page(p0, p1, args.rounds)
    raw_times, raw = timed(lambda: raw_reports.exposure_report(day_bounds(p0)[0], day_bounds(p1)[0]),
                           args.baseline_rounds)
    ratio = median(raw_times) / median(report_times)
    n_item_rows = DailyItemCount.objects.filter(day__gte=p0, day__lt=p1).count()
    rows.append([f"report {args.days} days, count tables", median(report_times), min(report_times), "", "< 1 s"])
    rows.append([f"admin exposure page {args.days} days", median(page_times), min(page_times),
                 f"{n_item_rows:,} item rows", "< 1 s"])
    rows.append([f"report {args.days} days, raw rows (baseline)", median(raw_times), min(raw_times), "",
                 f"{ratio:,.0f}x slower"])
    results.update(report_s=report_times, raw_report_s=raw_times, speedup=ratio, admin_page_s=page_times,
                   item_rows=n_item_rows)
    same = report["impressions"] == raw["impressions"] and report["items_shown"] == raw["items_shown"]
    print(f"\nreports agree on impressions and items shown: {same} ({report['impressions']:,} impressions,"
          f" gini {report['gini_of_exposure']} vs {raw['gini_of_exposure']})")
    page_same = all(abs(float(page[k]) - float(report[k])) < 1e-9 for k in page)
    print(f"admin page agrees with the report on {', '.join(page)}: {page_same} ({page})")

    print_table(f"Report aggregation ({machine()})", ["step", "median s", "min s", "rows", "target / note"], rows)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
