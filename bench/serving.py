"""Serving latency of a personalised top-20 with the full exposure policy, on a synthetic shop.

    python bench/serving.py [--items 100000] [--events 1000000] [--requests 2000] [--json PATH]

Builds a fresh PostgreSQL database with a synthetic catalog and behaviour log (COPY), writes
a model artifact with random vectors and activates it, then measures:

* the bare floor: one user vector times every item vector and a numpy top-20;
* the service in process (``recommend_for_user``: history query, candidates, policy, reasons,
  impression queueing) and the whole Django view through the test client (plus auth, DRF,
  orjson rendering);
* a real gunicorn server on loopback (sync workers), hammered by client threads: latency
  seen by the client, requests/s, and each worker's RSS and PSS (the memory-mapped vectors
  are shared between workers, which PSS shows and RSS does not).

Targets: p50 <= 5 ms, p99 <= 15 ms, >= 300 req/s, worker RSS <= 400 MB. The client runs on
the same (2-core) machine as the server and the database, so the HTTP figures are a floor
on what a bigger box does, not a ceiling.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

# One BLAS thread per process, set before numpy loads: a matrix-vector product over 100k
# items gains nothing from more, and several workers' BLAS threads fighting over the cores
# turn 0.3 ms into 15 ms at p99. Inherited by the gunicorn workers (bench_env copies os.environ).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import bench_env, fresh_database, gunicorn, machine, print_table, write_json  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000.0, q)) if xs else float("nan")


def copy_rows(cursor, sql: str, rows) -> None:
    """COPY tab-separated rows (no tabs or newlines in the values)."""
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join("\\N" if v is None else str(v) for v in row))
        buf.write("\n")
    with cursor.copy(sql) as copy:
        copy.write(buf.getvalue())


def build_shop(n_items: int, n_users: int, n_events: int, seed: int) -> None:
    """Items, users and events by COPY; popularity follows a Zipf-like law (a long tail)."""
    from django.db import connection

    rng = np.random.default_rng(seed)
    now = datetime.now(timezone.utc)
    with connection.cursor() as c:
        raw = c.cursor
        copy_rows(
            raw,
            "COPY recommender_item (external_id, title, description, category, brand, price, attributes, "
            "is_active, in_stock, is_placeholder, text_hash, created_at, updated_at) FROM STDIN",
            (
                (f"sku-{i}", f"Item {i}", "", f"cat-{i % 200}", "", f"{5 + (i % 300):.2f}", "{}", "t",
                 "f" if i % 20 == 0 else "t", "f", "", (now - timedelta(days=int(i % 400))).isoformat(), now.isoformat())
                for i in range(n_items)
            ),
        )
        copy_rows(
            raw, "COPY recommender_shopuser (external_id, created_at) FROM STDIN",
            ((f"user-{j}", now.isoformat()) for j in range(n_users)),
        )
        c.execute("SELECT id FROM recommender_item ORDER BY id")
        item_pks = np.array([r[0] for r in c.fetchall()])
        c.execute("SELECT id FROM recommender_shopuser ORDER BY id")
        user_pks = np.array([r[0] for r in c.fetchall()])
        ranks = np.minimum(rng.zipf(1.3, n_events) - 1, n_items - 1)
        perm = rng.permutation(n_items)
        items = item_pks[perm[ranks]]
        users = user_pks[rng.integers(0, n_users, n_events)]
        types = rng.choice([1, 1, 1, 3, 3, 4, 5], n_events)
        secs = rng.integers(0, 30 * 86_400, n_events)
        base = now.timestamp()
        copy_rows(
            raw,
            "COPY recommender_event (user_id, item_id, event_type, query, timestamp, ingested_at) FROM STDIN",
            (
                (int(u), int(i), int(t), "", datetime.fromtimestamp(base - int(s), timezone.utc).isoformat(), now.isoformat())
                for u, i, t, s in zip(users, items, types, secs)
            ),
        )
        c.execute("ANALYZE")


def write_model(root: Path, dim: int, seed: int) -> None:
    """Random vectors with cluster structure, as the training pipeline would write them."""
    from django.db import connection

    from recommender.models import ModelVersion
    from recommender.training.pipeline import do_activate

    rng = np.random.default_rng(seed)
    with connection.cursor() as c:
        c.execute("SELECT id FROM recommender_item ORDER BY id")
        item_pks = np.array([r[0] for r in c.fetchall()], dtype=np.int64)
        c.execute("SELECT id FROM recommender_shopuser ORDER BY id")
        user_pks = np.array([r[0] for r in c.fetchall()], dtype=np.int64)
    centers = rng.normal(size=(50, dim)).astype(np.float32)
    items = centers[rng.integers(0, 50, len(item_pks))] + 0.5 * rng.normal(size=(len(item_pks), dim)).astype(np.float32)
    users = centers[rng.integers(0, 50, len(user_pks))] + 0.5 * rng.normal(size=(len(user_pks), dim)).astype(np.float32)
    path = root / "bench-v1"
    path.mkdir(parents=True, exist_ok=True)
    for stem, arr in (("item_vectors", items), ("user_vectors", users), ("item_pks", item_pks), ("user_pks", user_pks)):
        np.save(path / f"{stem}.npy", arr.astype(arr.dtype), allow_pickle=False)
    (path / "meta.json").write_text("{}")
    version = ModelVersion.objects.create(name="bench-v1", kind="random", status="ready", artifact_path=str(path))
    do_activate(version)


def make_policy() -> None:
    """The full policy: tail boost and quota, MMR diversity, an exploration slot, promotions, a cap."""
    from recommender.models import ExposurePolicy, Promotion

    policy = ExposurePolicy.objects.create(
        name="bench", is_default=True, head_share=0.2, head_window_days=30, tail_boost=0.3, min_tail_share=0.3,
        diversity=0.2, exploration_slots=1, exclude_purchased=True, daily_impression_cap=10_000,
    )
    for c in range(5):
        Promotion.objects.create(policy=policy, category=f"cat-{c}", boost=0.5)


def floor_latency(n: int, users: list[int], seed: int) -> list[float]:
    """Bare numpy: a user's vector times every item vector and a top-20 (no policy, no Django)."""
    from recommender.serving.state import get_state

    space, _ = get_state().current()
    index = space.index
    out = []
    for j in users[:n]:
        t = time.perf_counter()
        q = np.asarray(index.user_vectors[j])
        scores = index.item_vectors @ q
        top = np.argpartition(-scores, 19)[:20]
        top[np.argsort(-scores[top])]
        out.append(time.perf_counter() - t)
    return out


def ann_rows(n: int, seed: int) -> list[list]:
    """Exact product vs the hnswlib graph on the served vectors: per-query time and recall@200."""
    try:
        import hnswlib  # noqa: F401
    except ImportError:
        return []
    from recommender.serving.index import VectorIndex
    from recommender.serving.state import get_state

    exact = get_state().current()[0].index
    graph = VectorIndex("ann", exact.item_vectors, exact.item_pks, ann_min_cells=1)
    t = time.perf_counter()
    while not graph.uses_ann:
        time.sleep(0.05)
    build = time.perf_counter() - t
    rng = np.random.default_rng(seed)
    queries = np.asarray(exact.user_vectors[rng.integers(0, len(exact.user_pks), n)])
    times = {"exact": [], "hnsw": []}
    recall = []
    for q in queries:
        t = time.perf_counter()
        a, _ = exact.search(q, 200)
        times["exact"].append(time.perf_counter() - t)
        t = time.perf_counter()
        b, _ = graph.search(q, 200)
        times["hnsw"].append(time.perf_counter() - t)
        recall.append(len(set(a.tolist()) & set(b.tolist())) / 200)
    return [
        ["exact numpy", pct(times["exact"], 50), pct(times["exact"], 99), 1.0, 0.0],
        ["hnswlib (M=16, ef=256)", pct(times["hnsw"], 50), pct(times["hnsw"], 99), float(np.mean(recall)), build],
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/shop_recs_srvbench"))
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--requests", type=int, default=2_000, help="per measurement")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="measure the database of a previous run again (no rebuild)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    t0 = time.perf_counter()
    url = args.database_url if args.reuse else fresh_database(args.database_url)
    os.environ.update(bench_env(url))
    import django

    django.setup()
    if not args.reuse:
        build_shop(args.items, args.users, args.events, args.seed)
        artifacts = Path(tempfile.mkdtemp(prefix="bench-serving-"))
        write_model(artifacts, args.dim, args.seed)
        make_policy()
    setup_s = time.perf_counter() - t0

    from rest_framework.test import APIClient

    from recommender.api.apikeys import do_create_api_key
    from recommender.serving import impressions, recommend_for_user

    rng = np.random.default_rng(args.seed + 1)
    user_rows = rng.integers(0, args.users, args.requests).tolist()
    t = time.perf_counter()
    recommend_for_user("user-0", 20)
    load_s = time.perf_counter() - t

    floor = floor_latency(args.requests, user_rows, args.seed)
    service = []
    for j in user_rows:
        t = time.perf_counter()
        recommend_for_user(f"user-{j}", 20)
        service.append(time.perf_counter() - t)
    _, key = do_create_api_key("bench", "recommend")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    client.get("/api/v1/recommendations/users/user-1?k=20")
    view = []
    for j in user_rows:
        t = time.perf_counter()
        r = client.get(f"/api/v1/recommendations/users/user-{j}?k=20")
        view.append(time.perf_counter() - t)
        assert r.status_code == 200, r.content
    impressions.flush()
    ann = ann_rows(min(args.requests, 500), args.seed)

    rows = [
        ["bare numpy top-20 (floor)", pct(floor, 50), pct(floor, 99), len(floor) / sum(floor), 1.0],
        ["service in process", pct(service, 50), pct(service, 99), len(service) / sum(service),
         statistics.median(service) / statistics.median(floor)],
        ["Django view in process", pct(view, 50), pct(view, 99), len(view) / sum(view),
         statistics.median(view) / statistics.median(floor)],
    ]

    import requests

    from django.db import connections

    connections.close_all()
    http: list[float] = []
    errors = 0
    mem = []
    with gunicorn(url, workers=args.workers) as (base, proc):
        headers = {"Authorization": f"Bearer {key}"}
        warm = requests.Session()
        for j in range(50):  # every worker loads the version and its catalog
            warm.get(f"{base}/api/v1/recommendations/users/user-{j}?k=20", headers=headers, timeout=60)
        lock = threading.Lock()
        per_client = args.requests // args.clients

        def hammer(c: int) -> None:
            nonlocal errors
            s = requests.Session()
            mine = []
            bad = 0
            for j in user_rows[c * per_client:(c + 1) * per_client]:
                t = time.perf_counter()
                r = s.get(f"{base}/api/v1/recommendations/users/user-{j}?k=20", headers=headers, timeout=30)
                mine.append(time.perf_counter() - t)
                bad += r.status_code != 200
            with lock:
                http.extend(mine)
                errors += bad

        started = time.perf_counter()
        threads = [threading.Thread(target=hammer, args=(c,)) for c in range(args.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - started
        for pid in _children(proc.pid):
            mem.append(_memory(pid))
    rows.append([f"gunicorn x{args.workers}, {args.clients} client threads", pct(http, 50), pct(http, 99),
                 len(http) / wall, statistics.median(http) / statistics.median(floor)])
    print(f"machine: {machine()}; {args.items:,} items, {args.users:,} users, {args.events:,} events, d={args.dim}; "
          f"setup {setup_s:.0f} s, first request (load) {load_s * 1000:.0f} ms; HTTP errors: {errors}")
    print_table("Personalised top-20 with the full policy", ["path", "p50 ms", "p99 ms", "req/s", "p50 / floor"], rows)
    print_table("gunicorn workers", ["pid", "RSS MB", "PSS MB"], [[p, r, s] for p, r, s in mem])
    if ann:
        print_table("Top-200 candidates: exact vs graph", ["search", "p50 ms", "p99 ms", "recall@200", "build s"], ann)
    write_json(args.json, {
        "machine": machine(), "items": args.items, "users": args.users, "events": args.events, "dim": args.dim,
        "requests": args.requests, "http_errors": errors, "load_ms": load_s * 1000,
        "rows": [dict(zip(["path", "p50_ms", "p99_ms", "req_per_s", "p50_over_floor"], r)) for r in rows],
        "workers": [dict(zip(["pid", "rss_mb", "pss_mb"], m)) for m in mem],
        "candidates": [dict(zip(["search", "p50_ms", "p99_ms", "recall_at_200", "build_s"], r)) for r in ann],
    })


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _memory(pid: int) -> tuple[int, float, float]:
    rss = pss = float("nan")
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
    except OSError:  # the worker exited meanwhile: its figures stay NaN in the table
        rss = pss = float("nan")
    return pid, rss, pss


if __name__ == "__main__":
    main()
