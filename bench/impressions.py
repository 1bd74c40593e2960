"""Cost of impression logging in PostgreSQL: the old writer against the new one, in one run.

Lists of ``--k`` items are written through the writer in flush-sized batches (``--batch``,
a gunicorn worker at 150 req/s and a 0.5 s flush interval queues ~75 lists) into an events
table that already holds ``--events`` rows. Three set-ups (four with the flag below), each measured over ``--rounds``
rounds of ``--lists`` lists, on the same database and the same connection:

* ``before``: the old writer (one CleanEvent per position through ``do_write_events``, an
  ``event_id`` per impression) with the old indexes (item and request indexes over impressions),
* ``new writer``: :func:`recommender.serving.impressions.do_log_impressions` (two statements
  per batch, events generated in SQL), still with the old indexes,
* ``after``: the new writer with the indexes of migration 0007 (the request index leaves
  impressions out; impressions carry no ``event_id``, so the unique index skips them too),
* with ``--item-index-partial``, also ``after + item index without impressions``: what leaving
  impressions out of (item, timestamp) as well would save. 0007 keeps that index whole because
  the foreign key check of deleting an Item then scans the table once per item.

Per list: wall time, client CPU (Python + driver), PostgreSQL backend CPU (from
/proc/<backend pid>/stat: the database must run on this machine), WAL bytes. Medians over
rounds; each round's rows are deleted and vacuumed away so every round sees the same table.

    python bench/impressions.py [--database-url URL] [--events N] [--lists N] [--batch N] [--rounds N] [--json PATH]
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import bench_env, fresh_database, machine, median, print_table, write_json  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/shop_recs_bench_impressions"
N_ITEMS, N_USERS = 5_000, 20_000
# The indexes migration 0007 changed (and the item index it did not), as they were and could be.
INDEXES = {
    "rec_event_item_time": "CREATE INDEX rec_event_item_time ON recommender_event (item_id, timestamp)",
    "rec_event_request": "CREATE INDEX rec_event_request ON recommender_event (request_id)"
    " WHERE request_id IS NOT NULL",
    "rec_event_item_time_noimp": "CREATE INDEX rec_event_item_time_noimp ON recommender_event (item_id, timestamp)"
    " WHERE NOT (event_type = 7)",
    "rec_event_request_noimp": "CREATE INDEX rec_event_request_noimp ON recommender_event (request_id)"
    " WHERE request_id IS NOT NULL AND NOT (event_type = 7)",
}
OLD = ("rec_event_item_time", "rec_event_request")
NEW = ("rec_event_item_time", "rec_event_request_noimp")
NEW_ITEM_PARTIAL = ("rec_event_item_time_noimp", "rec_event_request_noimp")


def setup_django(url: str) -> None:
    os.environ.update(bench_env(url))
    import django

    django.setup()


def seed(n_events: int) -> None:
    """Items, shoppers and ``n_events`` events (a third of them impressions) generated in SQL."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO recommender_item (external_id, title, description, category, brand, attributes, is_active,"
            " in_stock, is_placeholder, text_hash, created_at, updated_at)"
            " SELECT 'sku-' || g, 'Item ' || g, '', 'c' || (g %% 20), '', '{}', true, true, false, '', now(), now()"
            " FROM generate_series(1, %s) g",
            [N_ITEMS],
        )
        cur.execute(
            "INSERT INTO recommender_shopuser (external_id, created_at)"
            " SELECT 'user-' || g, now() FROM generate_series(1, %s) g",
            [N_USERS],
        )
        cur.execute(
            """
            INSERT INTO recommender_event (user_id, item_id, event_type, value, query, request_id, timestamp,
                                           event_id, ingested_at)
            SELECT u.min + (random() * (u.max - u.min))::bigint,
                   i.min + (power(random(), 3) * (i.max - i.min))::bigint,
                   t.type, NULL, '',
                   CASE WHEN t.type IN (3, 5, 7) THEN gen_random_uuid() END,
                   now() - random() * interval '60 days',
                   CASE WHEN t.type <> 7 THEN 'seed-' || g END,
                   now() - random() * interval '60 days'
            FROM generate_series(1, %s) g
            CROSS JOIN (SELECT min(id), max(id) FROM recommender_shopuser) u
            CROSS JOIN (SELECT min(id), max(id) FROM recommender_item) i
            CROSS JOIN LATERAL (SELECT (ARRAY[1,1,1,1,3,3,4,5,7,7,7,7])[1 + (g %% 12)] AS type) t
            """,
            [n_events],
        )
        cur.execute("VACUUM ANALYZE recommender_event")
        cur.execute("VACUUM ANALYZE recommender_shopuser")
        cur.execute("VACUUM ANALYZE recommender_item")


def make_lists(n: int, k: int, rng: random.Random, item_pks: list[int], now) -> list:
    from recommender.serving.impressions import ServedRecord

    out = []
    for j in range(n):
        pks = rng.sample(item_pks, k)
        # one shopper in twenty is new: the writer must create them
        user = f"user-{rng.randrange(N_USERS)}" if rng.random() > 0.05 else f"new-{uuid.uuid4().hex[:12]}"
        out.append(ServedRecord(
            request_id=str(uuid.uuid4()), served_at=now - timedelta(milliseconds=j), endpoint="user", user_id=user,
            variant="", policy="built-in", model_version="v1", fallback="", item_pks=tuple(pks),
            item_ids=tuple(f"sku-{p}" for p in pks), segments="t" * k,
        ))
    return out


def write_before(records) -> None:
    """The writer as it was before: CleanEvent per position, event_id per impression, ORM served lists."""
    from django.db import transaction

    from recommender.ingestion.events import do_write_events
    from recommender.ingestion.validation import CleanEvent
    from recommender.models import EventType, ServedList

    events = [
        CleanEvent(
            user_id=r.user_id, item_id=item_id, event_type=int(EventType.IMPRESSION), timestamp=r.served_at,
            value=float(pos + 1), query="", request_id=uuid.UUID(r.request_id),
            event_id=f"imp:{r.request_id}:{pos}",
        )
        for r in records
        for pos, item_id in enumerate(r.item_ids)
    ]
    with transaction.atomic():
        ServedList.objects.bulk_create(
            [
                ServedList(
                    request_id=uuid.UUID(r.request_id), served_at=r.served_at, endpoint=r.endpoint,
                    user_external_id=r.user_id[:128], variant=r.variant, policy=r.policy,
                    model_version=r.model_version, fallback=r.fallback[:100], items=list(r.item_pks),
                    segments=r.segments,
                )
                for r in records
            ],
            ignore_conflicts=True,
        )
        if events:
            do_write_events(events, unknown_items="placeholder")


def backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_round(writer, lists: list, batch: int, pid: int) -> dict[str, float]:
    from django.db import connection

    with connection.cursor() as cur:
        # Every round starts right after a checkpoint: the full-page images each first write
        # of a page costs in WAL then count alike in every round and set-up.
        cur.execute("CHECKPOINT")
        cur.execute("SELECT max(id) FROM recommender_event")
        (last_id,) = cur.fetchone()
        cur.execute("SELECT pg_current_wal_lsn()")
        (wal0,) = cur.fetchone()
    pg0, py0, t0 = backend_cpu_s(pid), time.process_time(), time.perf_counter()
    for start in range(0, len(lists), batch):
        writer(lists[start : start + batch])
    wall, py, pg = time.perf_counter() - t0, time.process_time() - py0, backend_cpu_s(pid) - pg0
    with connection.cursor() as cur:
        cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [wal0])
        (wal,) = cur.fetchone()
        cur.execute("SELECT count(*) FROM recommender_event WHERE id > %s", [last_id])
        (written,) = cur.fetchone()
        # put the table back as it was, so every round and set-up sees the same one
        cur.execute("DELETE FROM recommender_event WHERE id > %s", [last_id])
        cur.execute("DELETE FROM recommender_servedlist")
        cur.execute("DELETE FROM recommender_shopuser WHERE external_id LIKE 'new-%%'")
        cur.execute("VACUUM recommender_event")
    n = len(lists)
    expected = sum(len(r.item_pks) for r in lists)
    if written != expected:
        raise SystemExit(f"the writer stored {written} impression events, expected {expected}")
    return {
        "wall_ms": 1000 * wall / n, "client_cpu_ms": 1000 * py / n, "pg_cpu_ms": 1000 * pg / n,
        "wal_kb": float(wal) / 1024 / n,
    }


def set_indexes(names: tuple[str, ...]) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        for name in INDEXES:
            cur.execute(f"DROP INDEX IF EXISTS {name}")
        for name in names:
            cur.execute(INDEXES[name])
        cur.execute("ANALYZE recommender_event")


def index_sizes() -> list[list]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes"
            " WHERE relname = 'recommender_event' ORDER BY 1"
        )
        return [[name, size / 2**20] for name, size in cur.fetchall()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--database-url", default=DEFAULT_URL)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--lists", type=int, default=2_000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--item-index-partial", action="store_true",
                    help="also measure (item, timestamp) without impressions (what 0007 leaves on the table)")
    ap.add_argument("--json")
    args = ap.parse_args()

    fresh_database(args.database_url)
    setup_django(args.database_url)
    from django.db import connection
    from django.utils import timezone

    from recommender.serving.impressions import do_log_impressions

    t0 = time.perf_counter()
    seed(args.events)
    print(f"seeded {args.events:,} events in {time.perf_counter() - t0:.1f} s ({machine()})")
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        (pid,) = cur.fetchone()
        cur.execute("SELECT id FROM recommender_item ORDER BY id")
        item_pks = [r[0] for r in cur.fetchall()]
    rng = random.Random(7)
    setups = [
        ("before", write_before, OLD),
        ("new writer", do_log_impressions, OLD),
        ("after", do_log_impressions, NEW),
    ]
    if args.item_index_partial:
        setups.append(("after + item index without impressions", do_log_impressions, NEW_ITEM_PARTIAL))
    results: dict[str, list[dict]] = {}
    sizes = {}
    for name, writer, names in setups:
        set_indexes(names)
        sizes[name] = [[index, mib] for index, mib in index_sizes() if index in names]
        one_round(writer, make_lists(50, args.k, rng, item_pks, timezone.now()), args.batch, pid)  # warm-up
        results[name] = [
            one_round(writer, make_lists(args.lists, args.k, rng, item_pks, timezone.now()), args.batch, pid)
            for _ in range(args.rounds)
        ]
    metrics = ["wall_ms", "client_cpu_ms", "pg_cpu_ms", "wal_kb"]
    med = {name: {m: median([r[m] for r in rs]) for m in metrics} for name, rs in results.items()}
    rows = [[name] + [med[name][m] for m in metrics] for name, _, _ in setups]
    rows.append(["ratio before/after"] + [med["before"][m] / med["after"][m] for m in metrics])
    print_table(
        f"Impression logging per list of {args.k}: {args.lists:,} lists in batches of {args.batch}, "
        f"{args.events:,} events already stored, median of {args.rounds} rounds",
        ["set-up", "wall ms/list", "client CPU ms/list", "PostgreSQL CPU ms/list", "WAL KiB/list"],
        rows,
    )
    print_table(
        f"Event indexes that differ between the set-ups, built on the same {args.events:,} rows", ["index", "MiB"],
        sorted({n: mib for _, rows in sizes.items() for n, mib in rows}.items()),
    )
    write_json(args.json, {"args": vars(args), "machine": machine(), "medians": med, "rounds": results,
                           "index_mib": sizes})


if __name__ == "__main__":
    main()
