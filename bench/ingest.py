"""Ingestion throughput into PostgreSQL: through POST /api/v1/events on a real gunicorn
server on loopback (batches of 1,000 and 10,000), through the service in process, through
``manage.py import_events``, and a raw COPY of the same rows as the floor, in one run.

    python bench/ingest.py [--database-url URL] [--rounds N] [--json PATH]

Target on a 2-core machine: at least 20,000 events/s through the API.
"""
from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import (  # noqa: E402
    bench_env,
    fresh_database,
    gunicorn,
    machine,
    manage,
    median,
    print_table,
    write_json,
)

EVENT_TYPES = ["view", "view", "view", "click", "click", "add_to_cart", "purchase", "search", "impression"]


def make_events(n: int, seed: int, tag: str, n_users: int = 20_000, n_items: int = 5_000) -> list[dict]:
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    out = []
    for i in range(n):
        et = rng.choice(EVENT_TYPES)
        rec = {
            "user_id": f"user-{rng.randrange(n_users)}",
            "item_id": f"sku-{int(rng.paretovariate(1.2)) % n_items}",
            "event_type": et,
            "timestamp": (now - timedelta(seconds=rng.randrange(30 * 86400))).isoformat(timespec="seconds"),
            "event_id": f"{tag}-{i}",
        }
        if et == "purchase":
            rec["value"] = rng.randint(1, 5)
        if et == "search":
            rec["query"] = "blue ceramic mug"
        out.append(rec)
    return out


def post_batches(base: str, key: str, bodies: list[bytes], clients: int = 1) -> tuple[list[float], float]:
    import requests

    latencies: list[float] = []
    lock = threading.Lock()
    queue = list(bodies)

    def worker():
        s = requests.Session()
        s.headers.update({"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            t0 = time.perf_counter()
            r = s.post(f"{base}/api/v1/events", data=body, timeout=120)
            dt = time.perf_counter() - t0
            if r.status_code != 200:
                raise SystemExit(f"POST failed {r.status_code}: {r.text[:500]}")
            with lock:
                latencies.append(dt)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - t0


def copy_floor(database_url: str, events: list[dict]) -> float:
    """Seconds to COPY the same rows (already resolved to ids) into an unindexed temp table."""
    import psycopg

    rows = [
        (hash(e["user_id"]) % 10**9, hash(e["item_id"]) % 10**9, 1, e.get("value"), e.get("query", ""),
         e["timestamp"], e["event_id"])
        for e in events
    ]
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "CREATE TEMP TABLE floor_events (user_id bigint, item_id bigint, event_type smallint, value float8,"
            " query text, ts timestamptz, event_id text)"
        )
        t0 = time.perf_counter()
        with conn.cursor().copy("COPY floor_events FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
        conn.commit()
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/shop_recs_bench"))
    ap.add_argument("--rounds", type=int, default=12, help="batches per configuration")
    ap.add_argument("--import-rows", type=int, default=200_000)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    url = fresh_database(args.database_url)
    key = manage("create_api_key", "--name", "bench", "--scopes", "ingest", database_url=url).strip().splitlines()[-1]
    results: dict = {"machine": machine()}
    rows = []

    # Django in this process too, for the in-process service baseline.
    os.environ.update(bench_env(url))
    import django

    django.setup()
    from recommender.ingestion import do_ingest_events

    configs = [(1_000, 1), (10_000, 1), (10_000, 2)]
    with gunicorn(url, workers=2) as (base, _):
        # Warm-up: creates most users and placeholder items so rounds measure steady state.
        post_batches(base, key, [orjson.dumps(make_events(10_000, 0, "warm"))])
        for size, clients in configs:
            bodies = [orjson.dumps(make_events(size, 100 * size + r + clients, f"api{size}-{clients}-{r}")) for r in range(args.rounds)]
            lat, total = post_batches(base, key, bodies, clients=clients)
            per_request = size / median(lat)
            overall = size * len(bodies) / total
            name = f"API POST /events, batch {size:,}, {clients} client(s)"
            results[f"api_{size}_c{clients}"] = {"median_request_s": median(lat), "events_per_s": overall, "per_request_events_per_s": per_request}
            rows.append([name, median(lat) * 1000, per_request, overall])
        # Retrying a batch: every event is a duplicate.
        dup_body = orjson.dumps(make_events(10_000, 7, "dup"))
        post_batches(base, key, [dup_body])
        lat, total = post_batches(base, key, [dup_body] * 4)
        rows.append(["API retry of a 10,000 batch (all duplicates)", median(lat) * 1000, 10_000 / median(lat), 40_000 / total])
        results["api_retry_10000"] = {"median_request_s": median(lat), "events_per_s": 10_000 / median(lat)}

    # In process, no HTTP: validation + SQL only.
    lat = []
    for r in range(max(3, args.rounds // 2)):
        batch = make_events(10_000, 5000 + r, f"svc-{r}")
        t0 = time.perf_counter()
        do_ingest_events(batch)
        lat.append(time.perf_counter() - t0)
    svc = 10_000 / median(lat)
    rows.append(["service do_ingest_events, batch 10,000 (no HTTP)", median(lat) * 1000, svc, svc])
    results["service_10000"] = {"median_request_s": median(lat), "events_per_s": svc}

    # The floor: COPY of the same number of already-resolved rows into an unindexed table.
    floor_times = [copy_floor(url, make_events(10_000, 9000 + r, f"floor-{r}")) for r in range(3)]
    floor = 10_000 / median(floor_times)
    rows.append(["floor: raw COPY of 10,000 rows, no indexes", median(floor_times) * 1000, floor, floor])
    results["copy_floor_10000"] = {"events_per_s": floor}

    # import_events on a CSV file.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.csv"
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["user_id", "item_id", "event_type", "timestamp", "value", "event_id"], extrasaction="ignore")
            w.writeheader()
            w.writerows(make_events(args.import_rows, 42, "csv"))
        t0 = time.perf_counter()
        manage("import_events", str(path), database_url=url)
        dt = time.perf_counter() - t0
    imp = args.import_rows / dt
    rows.append([f"manage.py import_events, {args.import_rows:,}-row CSV (whole command)", dt * 1000, imp, imp])
    results["import_events"] = {"rows": args.import_rows, "seconds": dt, "events_per_s": imp}

    best_api = max(v["events_per_s"] for k, v in results.items() if k.startswith("api_") and "retry" not in k)
    results["best_api_events_per_s"] = best_api
    for r in rows:
        r.append(r[3] / floor)
    print_table(
        f"Ingestion into PostgreSQL ({machine()}); target >= 20,000 events/s through the API",
        ["path", "median ms / batch", "events/s per batch", "events/s overall", "x COPY floor"],
        rows,
    )
    print(f"\nbest API throughput: {best_api:,.0f} events/s (target 20,000: {'met' if best_api >= 20_000 else 'NOT met'})")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
