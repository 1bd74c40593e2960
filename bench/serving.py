"""Serving latency of a personalised top-20 with the full exposure policy, on a synthetic shop.

    python bench/serving.py [--items 100000] [--events 1000000] [--requests 2000] [--json PATH]
    python bench/serving.py --reuse ...            # measure the database of a previous run again
    python bench/serving.py --ann-min-cells 1 ...  # serve from the hnswlib graph instead of exact search

Builds a fresh PostgreSQL database with a synthetic catalog and behaviour log (COPY), writes
a model artifact with random vectors and activates it, settles the database (VACUUM ANALYZE,
CHECKPOINT: no autovacuum pass or timed checkpoint in the middle of the figures), then measures:

* the bare floor: one user vector times every item vector and a numpy top-20;
* the service in process (``recommend_for_user``: history query, candidates, policy, reasons,
  impression queueing) and the whole Django view through the test client (plus auth, DRF,
  orjson rendering);
* a real gunicorn server on loopback, driven by a lean asyncio HTTP/1.1 client (raw sockets,
  keep-alive where the worker class allows it; ~0.1 ms of client CPU a request, where the
  ``requests`` library spent about 1 ms on the same two cores the server needs):
  - one connection, one request at a time: the latency of an unloaded server;
  - an open loop at ``--rate`` requests/s (default 300, the target), scheduled on the clock
    whatever the answers do, so slow answers queue up as they would in production; each
    latency runs from the request's scheduled time (``--trace PATH`` writes every request's
    due, sent and answered times and its Server-Timing, to find stalls);
  - a closed loop of ``--clients`` connections as fast as they go: the saturated throughput,
    and the CPU each request cost the workers, PostgreSQL and the client (from /proc);
  - when ``--rate`` is more than this machine serves flat out, the open loop again at 60% of
    the flat-out rate: the latency at a load the machine can carry.
  ``--worker-trace PATH`` (bench/gunicorn_trace.py) writes each worker's garbage collections,
  refreshes and impression writes on the clock of ``--trace``, and prints which of them the
  slowest 2% of the open loop's requests overlapped, against the share of all requests that did;
  ``--no-impressions`` shows what impression logging costs (not the product's behaviour).
  The server is gunicorn's ``gthread`` worker by default (keep-alive; ``sync`` closes every
  connection), one thread per worker and one worker per core; the client's connections are
  spread evenly over the workers (``--worker-connections``).
  Each row gives the latency the client observed and the time the server says it spent in
  the view (the ``Server-Timing`` header: auth, parsing, the service and JSON rendering;
  not gunicorn, nor a wait for a free worker), plus each worker's RSS and PSS (the
  memory-mapped vectors are shared between workers, which PSS shows and RSS does not).

Targets: p50 <= 5 ms, p99 <= 15 ms, >= 300 req/s, worker RSS <= 400 MB. The client runs on
the same (2-core) machine as the server and the database, so the HTTP figures are a floor
on what a bigger box does, not a ceiling. ``--json PATH`` writes the headline figures:
``p50_ms``/``p99_ms`` as the client observed them in the open loop at ``--rate``, ``rps``
the saturated throughput, ``rss_mb`` the largest worker's RSS, ``floor_ms`` the bare top-20.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import io
import os
import statistics
import sys
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

# One BLAS thread per process, set before numpy loads: a matrix-vector product over 100k
# items gains nothing from more, and several workers' BLAS threads fighting over the cores
# turn 0.3 ms into 15 ms at p99. Inherited by the gunicorn workers (bench_env copies os.environ).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import (  # noqa: E402
    PY, REPO, bench_env, free_port, fresh_database, machine, machine_speed, manage, print_table, write_json,
)


#: The share of the flat-out rate offered by the extra open loop when ``--rate`` overloads the machine.
RELATIVE_LOAD = 0.6


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


def settle_database() -> None:
    """VACUUM ANALYZE and a CHECKPOINT before anything is timed.

    A freshly bulk-loaded table (a million events by COPY) is due an autovacuum pass (the
    insert threshold) and its first writes set hint bits; left alone, that work and the
    next timed checkpoint land in the middle of the measurement (PostgreSQL shares the
    two cores with the server and the client). With ``--reuse`` it also settles the
    impressions earlier runs wrote.
    """
    from django.db import connection

    with connection.cursor() as c:  # autocommit: VACUUM cannot run inside a transaction
        c.execute("VACUUM (ANALYZE)")
        try:
            c.execute("CHECKPOINT")
        except Exception as exc:  # needs superuser or pg_checkpoint; the figures are noisier without
            print(f"no CHECKPOINT before measuring ({exc}); grant pg_checkpoint to the bench user", file=sys.stderr)


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
    """Exact product vs the hnswlib graph on the served vectors, for the candidates a request
    asks for (``SERVING_CANDIDATES``): per-query time and recall."""
    try:
        import hnswlib  # noqa: F401
    except ImportError:
        return []
    from recommender.conf import settings as rec_settings
    from recommender.serving.index import ANN_EF, VectorIndex
    from recommender.serving.state import get_state

    served = get_state().current()[0].index
    k = rec_settings.SERVING_CANDIDATES
    exact = VectorIndex("exact", served.item_vectors, served.item_pks, served.user_vectors, served.user_pks)
    graph = VectorIndex("ann", exact.item_vectors, exact.item_pks, ann_min_cells=1)
    t = time.perf_counter()
    while not graph.uses_ann:
        time.sleep(0.05)
    build = time.perf_counter() - t
    rng = np.random.default_rng(seed)
    queries = np.asarray(exact.user_vectors[rng.integers(0, len(exact.user_pks), n)])
    times = {"exact": [], "hnsw": []}
    recall, top20 = [], []
    for q in queries:
        t = time.perf_counter()
        a, _ = exact.search(q, k)
        times["exact"].append(time.perf_counter() - t)
        t = time.perf_counter()
        b, _ = graph.search(q, k)
        times["hnsw"].append(time.perf_counter() - t)
        found = set(b.tolist())
        recall.append(len(set(a.tolist()) & found) / k)
        top20.append(len(set(a[:20].tolist()) & found) / 20)  # the best items the policy would miss
    return [
        ["exact numpy", pct(times["exact"], 50), pct(times["exact"], 99), 1.0, 1.0, 0.0],
        [f"hnswlib (M=16, ef={ANN_EF})", pct(times["hnsw"], 50), pct(times["hnsw"], 99), float(np.mean(recall)),
         float(np.mean(top20)), build],
    ]


# --- a lean HTTP client --------------------------------------------------------------------------

class Connection:
    """One HTTP/1.1 connection on raw asyncio streams: GET, read the whole answer, reconnect if closed."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, float]:
        """(status, the server's view time in ms from ``Server-Timing``, NaN without one)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, server_ms, close = 0, float("nan"), False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "server-timing" and "dur=" in value:
                server_ms = float(value.split("dur=", 1)[1].split(";", 1)[0].split(",", 1)[0])
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        await self.reader.readexactly(length)
        if close:  # gunicorn's sync workers answer one request per connection
            self.close()
        return status, server_ms

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _get(conn: Connection, path: str) -> tuple[int, float]:
    """``conn.get``, with a dropped connection counted as status 0 (and reopened next time)."""
    try:
        return await conn.get(path)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        conn.close()
        return 0, float("nan")


@dataclass
class LoadResult:
    """Client-observed latencies (s), server view times (ms), wall time (s) and non-200 answers."""

    latency: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    wall: float = 0.0
    errors: int = 0
    #: Open loop only: per request (due, sent, answered) on the loop clock (time.monotonic), server ms.
    trace: list[tuple[float, float, float, float]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latency) / self.wall if self.wall else float("nan")

    def row(self, label: str, floor_p50: float) -> list:
        server = [x for x in self.server_ms if x == x]
        return [label, pct(self.latency, 50), pct(self.latency, 99),
                float(np.percentile(server, 50)) if server else float("nan"),
                float(np.percentile(server, 99)) if server else float("nan"),
                self.rate, pct(self.latency, 50) / (floor_p50 * 1000)]


async def closed_loop(host: str, port: int, headers: dict, paths: list[str], clients: int) -> LoadResult:
    """``clients`` connections, each sending its share of ``paths`` one after the other."""
    out = LoadResult()
    loop = asyncio.get_running_loop()

    async def run(mine: list[str]) -> None:
        conn = Connection(host, port, headers)
        try:
            for path in mine:
                t = loop.time()
                status, server = await _get(conn, path)
                out.latency.append(loop.time() - t)
                out.server_ms.append(server)
                out.errors += status != 200
        finally:
            conn.close()

    started = loop.time()
    await asyncio.gather(*(run(paths[c::clients]) for c in range(clients)))
    out.wall = loop.time() - started
    return out


async def open_loop(host: str, port: int, headers: dict, paths: list[str], rate: float, connections: int) -> LoadResult:
    """Request i is due at ``i / rate`` s whatever earlier answers did; its latency runs from then.

    A request that finds every connection busy waits for one, and that wait counts (it is the
    queue a slow server builds); so does the client's own lateness in sending it (the clock is
    the schedule, not the send: a stalled load generator must not hide a stalled server).
    The connections are opened (one request each, not timed) before the schedule starts, and
    one dispatcher starts each request when it is due: creating 2,000 sleeping tasks at once
    made the first ~30 requests 20-90 ms late, a burst that alone was 1.7% of the requests.
    """
    out = LoadResult()
    loop = asyncio.get_running_loop()
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    conns = [Connection(host, port, headers) for _ in range(connections)]
    await asyncio.gather(*(_get(conn, paths[0]) for conn in conns))
    for conn in conns:
        pool.put_nowait(conn)

    async def one(due: float, path: str) -> None:
        woke = loop.time()
        conn = await pool.get()
        try:
            status, server = await _get(conn, path)
        finally:
            pool.put_nowait(conn)
        done = loop.time()
        out.latency.append(done - due)
        out.server_ms.append(server)
        out.errors += status != 200
        out.trace.append((due, woke, done, server))

    # A full collection of this process (numpy, Django, 2,000 tasks) takes ~75 ms: one landed
    # near the end of every run and stalled the client; collect now, then not while timing.
    gc.collect()
    gc.disable()
    tasks = set()
    start = loop.time() + 0.05
    try:
        for i, path in enumerate(paths):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(due, path))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    finally:
        gc.enable()
    out.wall = loop.time() - start
    for conn in conns:
        conn.close()
    return out


#: What the server inherits from this process beyond ``bench_env`` (e.g. ``--ann-min-cells``).
_SERVER_ENV = ("DJANGO_SETTINGS_MODULE", "BENCH_ANN_MIN_CELLS", "BENCH_NO_IMPRESSIONS")


@contextmanager
def gunicorn_server(url: str, workers: int, worker_class: str, threads: int, connections: int,
                    worker_trace: str | None = None):
    """gunicorn on loopback with the given worker class; yields (port, process).

    ``connections`` caps the keep-alive connections one gthread worker holds: without a cap
    the first worker to wake accepts every connection of a small client pool and the other
    worker idles (measured here: 227 req/s on one worker, the other's RSS never grew).
    """
    port = free_port()
    env = {**bench_env(url), **{k: os.environ[k] for k in _SERVER_ENV if k in os.environ}}
    traced = []
    if worker_trace:
        Path(worker_trace).write_text("pid\twhat\tstart_s\tend_s\n")
        traced = ["-c", str(REPO / "bench" / "gunicorn_trace.py")]
        env["BENCH_WORKER_TRACE"] = str(Path(worker_trace).resolve())
    proc = subprocess.Popen(
        [PY, "-m", "gunicorn", *traced, "shop_recs.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--worker-class", worker_class, "--threads", str(threads), "--keep-alive", "30",
         "--worker-connections", str(connections), "--timeout", "120", "--log-level", "warning"],
        cwd=REPO, env=env, preexec_fn=_server_priority,
    )
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit(f"gunicorn exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("gunicorn did not start")
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


#: The niceness the benchmark started with, which the server and its workers keep.
_START_NICE = os.getpriority(os.PRIO_PROCESS, 0)


def _server_priority() -> None:
    """In the gunicorn child: the priority the benchmark started with, whatever the client took."""
    os.setpriority(os.PRIO_PROCESS, 0, _START_NICE)


def client_priority(nice: int) -> str:
    """Run the load generator at ``nice`` (below 0 needs root): it shares the cores with the
    server, and a request it sends late or an answer it reads late is counted as the server's
    latency (``client sent ... after the schedule`` in the header line). On a real deployment
    the callers are other machines. Returns what was done, for the header line."""
    if nice == _START_NICE:
        return f"load generator at nice {nice}, as the server"
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except PermissionError:
        return f"load generator at nice {_START_NICE} (nice {nice} needs root), as the server"
    return f"load generator at nice {nice}, server and PostgreSQL at their own ({_START_NICE} for gunicorn)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/shop_recs_srvbench"))
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--requests", type=int, default=2_000, help="per measurement")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers (2 cores: 2)")
    ap.add_argument("--worker-class", default="gthread",
                    help="gunicorn worker class (gthread keeps connections alive; sync closes each)")
    ap.add_argument("--threads", type=int, default=1, help="threads per gthread worker")
    ap.add_argument("--rate", type=float, default=300.0, help="offered load of the open loop, requests/s")
    ap.add_argument("--clients", type=int, default=4,
                    help="keep-alive connections of the client pool (open and flat-out loops), "
                         "spread evenly over the workers")
    ap.add_argument("--ann-min-cells", type=int, default=None,
                    help="serve with this SERVING_ANN_MIN_CELLS (e.g. 1: the hnswlib graph at any size); "
                         "default: the project's setting")
    ap.add_argument("--no-impressions", action="store_true",
                    help="do not write served lists (shows what impression logging costs; not the product's behaviour)")
    ap.add_argument("--client-nice", type=int, default=-5,
                    help="niceness of the load generator during the HTTP runs (gunicorn keeps the benchmark's own): "
                         "its lateness on the shared cores counts as latency")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="measure the database of a previous run again (no rebuild)")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--trace", help="write the open loop's requests here (TSV: due, sent, answered s; server ms)")
    ap.add_argument("--worker-trace", help="write each worker's garbage collections, refreshes and impression "
                                           "writes here (TSV on the same clock as --trace; bench/gunicorn_trace.py)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    if args.reuse:
        manage("migrate", "--noinput", database_url=args.database_url)
    url = args.database_url if args.reuse else fresh_database(args.database_url)
    os.environ.update(bench_env(url))
    if args.ann_min_cells is not None:
        os.environ.update(DJANGO_SETTINGS_MODULE="bench.serving_settings", BENCH_ANN_MIN_CELLS=str(args.ann_min_cells))
    if args.no_impressions:
        os.environ.update(DJANGO_SETTINGS_MODULE="bench.serving_settings", BENCH_NO_IMPRESSIONS="1")
    import django

    django.setup()
    if not args.reuse:
        build_shop(args.items, args.users, args.events, args.seed)
        artifacts = Path(tempfile.mkdtemp(prefix="bench-serving-"))
        write_model(artifacts, args.dim, args.seed)
        make_policy()
    settle_database()
    setup_s = time.perf_counter() - t0

    from rest_framework.test import APIClient

    from recommender.api.apikeys import do_create_api_key
    from recommender.serving import impressions, recommend_for_user

    rng = np.random.default_rng(args.seed + 1)
    user_rows = rng.integers(0, args.users, args.requests).tolist()
    t = time.perf_counter()
    recommend_for_user("user-0", 20)
    load_s = time.perf_counter() - t
    from recommender.conf import settings as rec_settings
    from recommender.serving.state import get_state

    index = get_state().current()[0].index
    uses_graph = (
        importlib.util.find_spec("hnswlib") is not None
        and index.n_items * index.dim >= rec_settings.SERVING_ANN_MIN_CELLS
    )
    waited = time.perf_counter()
    while uses_graph and not index.uses_ann and time.perf_counter() - waited < 120:
        time.sleep(0.1)  # the graph is built in the background; time the steady state

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

    floor_p50 = statistics.median(floor)
    nan = float("nan")
    rows = [
        ["bare numpy top-20 (floor)", pct(floor, 50), pct(floor, 99), nan, nan, len(floor) / sum(floor), 1.0],
        ["service in process", pct(service, 50), pct(service, 99), nan, nan, len(service) / sum(service),
         statistics.median(service) / floor_p50],
        ["Django view in process", pct(view, 50), pct(view, 99), nan, nan, len(view) / sum(view),
         statistics.median(view) / floor_p50],
    ]

    from django.db import connections

    connections.close_all()
    speed = machine_speed()  # next to the HTTP runs: the box's speed when they ran
    mem = []
    headers = {"Authorization": f"Bearer {key}"}
    paths = [f"/api/v1/recommendations/users/user-{j}?k=20" for j in user_rows]
    server = f"gunicorn {args.worker_class} x{args.workers}" + (f"x{args.threads}t" if args.threads > 1 else "")
    server += ", hnswlib graph" if uses_graph else ", exact search"
    if args.no_impressions:
        server += ", impressions NOT logged"
    per_worker = -(-args.clients // args.workers)  # the client pool spread evenly over the workers
    priority = client_priority(args.client_nice)
    with gunicorn_server(url, args.workers, args.worker_class, args.threads, per_worker,
                         args.worker_trace) as (port, proc):
        # Every worker loads the version and its catalog before anything is timed.
        asyncio.run(closed_loop("127.0.0.1", port, headers, paths[:200], args.clients))
        _wait_idle(_children(proc.pid))  # e.g. each worker building its ANN graph
        single = asyncio.run(closed_loop("127.0.0.1", port, headers, paths, 1))
        load_avg = os.getloadavg()[0]
        opened = asyncio.run(open_loop("127.0.0.1", port, headers, paths, args.rate, args.clients))
        if args.trace:
            Path(args.trace).write_text("due_s\twoke_s\tdone_s\tserver_ms\n" + "".join(
                f"{d:.6f}\t{w:.6f}\t{e:.6f}\t{m:.3f}\n" for d, w, e, m in sorted(opened.trace)))
        workers = _children(proc.pid)
        db_name = url.rsplit("/", 1)[-1]
        backends, pg_other = _postgres_processes(db_name)
        before = _cpu(workers), _cpu(backends), os.times(), _cpu(pg_other), _machine_busy()
        saturated = asyncio.run(closed_loop("127.0.0.1", port, headers, paths, args.clients))
        backends, pg_other = _postgres_processes(db_name)  # backends a worker opened meanwhile too
        after = _cpu(workers), _cpu(backends), os.times(), _cpu(pg_other), _machine_busy()
        # Where the target rate overloads this machine, the same open loop at 60% of what it
        # served flat out: the latency a shopper sees at a load this box can carry.
        relative = None
        if saturated.rate * RELATIVE_LOAD < args.rate:
            relative = asyncio.run(open_loop("127.0.0.1", port, headers, paths, saturated.rate * RELATIVE_LOAD,
                                             args.clients))
        for pid in workers:
            mem.append(_memory(pid))
    n_sat = len(saturated.latency)
    cpu_ms = {
        "gunicorn workers": _cpu_delta(before[0], after[0]) / n_sat * 1000,
        "PostgreSQL (this database)": _cpu_delta(before[1], after[1]) / n_sat * 1000,
        "PostgreSQL, its other processes (WAL writer, autovacuum, ...)":
            _cpu_delta(before[3], after[3]) / n_sat * 1000,
        "load generator (this process)": (
            (after[2].user + after[2].system) - (before[2].user + before[2].system)) / n_sat * 1000,
    }
    # Everything the cores did, the kernel's network and interrupt work included.
    machine_ms = (after[4] - before[4]) / n_sat * 1000
    opened_row = opened.row(f"{server}, open loop offered {args.rate:g} req/s", floor_p50)
    rows += [
        single.row(f"{server}, 1 connection (unloaded)", floor_p50),
        opened_row,
        saturated.row(f"{server}, {args.clients} connections flat out", floor_p50),
    ]
    if relative is not None:
        rows.append(relative.row(
            f"{server}, open loop at {RELATIVE_LOAD:.0%} of flat out ({saturated.rate * RELATIVE_LOAD:.0f} req/s)",
            floor_p50))
    errors = single.errors + opened.errors + saturated.errors + (relative.errors if relative else 0)
    late = [w - d for d, w, _, _ in opened.trace]
    print(f"machine: {machine()}; load average (1 min) {load_avg:.2f} during the HTTP runs; "
          f"{args.items:,} items, {args.users:,} users, {args.events:,} events, d={args.dim}; "
          f"setup {setup_s:.0f} s, first request (load) {load_s * 1000:.0f} ms; HTTP errors: {errors}; "
          f"open loop: the client sent p50 {pct(late, 50):.2f} ms / p99 {pct(late, 99):.2f} ms after the schedule "
          f"(counted in its latencies); {priority}")
    print(f"machine speed: a Python loop of 1M additions {speed['python_loop_ms']:.1f} ms, a pipe round "
          f"trip to another process p50 {speed['pipe_round_trip_us']:.1f} us / "
          f"p99 {speed['pipe_round_trip_p99_us']:.0f} us (compare boxes by these before their latencies)")
    print_table(
        "Personalised top-20 with the full policy (client: what the caller saw; server: Server-Timing of the view)",
        ["path", "client p50 ms", "client p99 ms", "server p50 ms", "server p99 ms", "req/s", "p50 / floor"], rows,
    )
    print_table("gunicorn workers", ["pid", "RSS MB", "PSS MB", "cores"], [list(m) for m in mem])
    print_table(
        "CPU per request in the flat-out run (ms; 2 cores give 2,000 ms a second to share)",
        ["process", "CPU ms / request"],
        [[k, v] for k, v in cpu_ms.items()] + [["total", sum(cpu_ms.values())],
                                               ["whole machine (/proc/stat, kernel included)", machine_ms]],
    )
    stalls = stall_rows(opened.trace, read_worker_trace(args.worker_trace)) if args.worker_trace else []
    if stalls:
        print_table(
            f"What the open loop's requests overlapped in the workers (--worker-trace; slowest "
            f"{SLOWEST_SHARE:.0%}: latency >= p{100 - SLOWEST_SHARE * 100:g})",
            ["worker event", "count", "median ms", "share of all requests", "share of the slowest"], stalls,
        )
    if ann:
        k = rec_settings.SERVING_CANDIDATES
        print_table(f"Top-{k} candidates: exact vs graph (exact top-20 among them: what the policy could miss)",
                    ["search", "p50 ms", "p99 ms", f"recall@{k}", "exact top-20 found", "build s"], ann)
    targets = {"p50_ms": 5.0, "p99_ms": 15.0, "rps": 300.0, "rss_mb": 400.0}
    headline = {
        "p50_ms": pct(opened.latency, 50),
        "p99_ms": pct(opened.latency, 99),
        "rps": saturated.rate,
        "rss_mb": max((m[1] for m in mem), default=nan),
        "floor_ms": floor_p50 * 1000,
    }
    met = {
        name: (headline[name] >= goal if name == "rps" else headline[name] <= goal) for name, goal in targets.items()
    }
    verdicts = []
    for name, ok in met.items():
        sign = ">=" if name == "rps" else "<="
        verdicts.append(f"{name} {headline[name]:.3g} ({'met' if ok else 'MISSED'}: {sign} {targets[name]:g})")
    print("\ntargets (client-observed, open loop at the offered rate; rps flat out): " + ", ".join(verdicts))
    write_json(args.json, {
        **headline,
        "search": "hnswlib graph" if uses_graph else "exact",
        "server_p50_ms": opened_row[3], "server_p99_ms": opened_row[4],
        "unloaded_p50_ms": pct(single.latency, 50), "unloaded_p99_ms": pct(single.latency, 99),
        "offered_rps": args.rate, "achieved_rps_open_loop": opened.rate,
        "relative_load": None if relative is None else {
            "offered_rps": saturated.rate * RELATIVE_LOAD, "p50_ms": pct(relative.latency, 50),
            "p99_ms": pct(relative.latency, 99), "achieved_rps": relative.rate,
        },
        "client_send_late_p50_ms": pct(late, 50), "client_send_late_p99_ms": pct(late, 99),
        "client_priority": priority,
        "targets": targets, "targets_met": met, "load_average_1min": load_avg, "cpu_ms_per_request": cpu_ms,
        "machine_cpu_ms_per_request": machine_ms,
        "server": server, "machine": machine(), "machine_speed": speed,
        "items": args.items, "users": args.users, "events": args.events,
        "dim": args.dim, "requests": args.requests, "http_errors": errors, "load_ms": load_s * 1000,
        "rows": [
            dict(zip(["path", "p50_ms", "p99_ms", "server_p50_ms", "server_p99_ms", "req_per_s", "p50_over_floor"], r))
            for r in rows
        ],
        "workers": [dict(zip(["pid", "rss_mb", "pss_mb", "cores"], m)) for m in mem],
        "stalls": [dict(zip(["event", "count", "median_ms", "share_all", "share_slowest"], r)) for r in stalls],
        "candidates": [dict(zip(["search", "p50_ms", "p99_ms", "recall_at_k", "exact_top20_found", "build_s"], r))
                       for r in ann],
    })


#: The share of the open loop's slowest requests whose overlaps :func:`stall_rows` reports.
SLOWEST_SHARE = 0.02


def read_worker_trace(path: str | Path) -> list[tuple[str, float, float]]:
    """``(what, start_s, end_s)`` of each line a worker wrote (bench/gunicorn_trace.py)."""
    out = []
    for line in Path(path).read_text().splitlines()[1:]:
        _pid, what, start, end = line.split("\t")
        out.append((what, float(start), float(end)))
    return out


def stall_rows(trace: list[tuple[float, float, float, float]], events: list[tuple[str, float, float]],
               slowest: float = SLOWEST_SHARE) -> list[list]:
    """What the slowest requests of an open loop ran into, against what every request did.

    ``trace`` holds the open loop's (due, sent, answered, server ms), ``events`` the workers'
    (what, start, end) on the same clock. A request overlaps an event that ran at any moment
    between its due time and its answer. Per kind of event: how many there were, their median
    length, the share of all requests that overlapped one and the share of the slowest
    ``slowest`` of them that did; a kind that explains the tail has the second share far above
    the first. The last row counts the slowest requests that overlapped nothing traced.
    """
    if not trace:
        return []
    req = np.asarray(trace, dtype=float)
    due, done = req[:, 0], req[:, 2]
    latency = done - due
    slow = latency >= np.quantile(latency, 1.0 - slowest)
    rows, touched = [], np.zeros(len(req), bool)
    for what in sorted({w for w, _, _ in events}):
        span = np.asarray([(s, e) for w, s, e in events if w == what])
        hit = np.zeros(len(req), bool)
        for start in range(0, len(span), 2000):  # (requests x events) booleans, a chunk at a time
            chunk = span[start:start + 2000]
            hit |= ((chunk[None, :, 0] < done[:, None]) & (chunk[None, :, 1] > due[:, None])).any(axis=1)
        touched |= hit
        rows.append([what, len(span), float(np.median(span[:, 1] - span[:, 0]) * 1000),
                     float(hit.mean()), float(hit[slow].mean())])
    rows.append(["(nothing traced)", 0, float("nan"), float((~touched).mean()), float((~touched)[slow].mean())])
    return rows


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


def _wait_idle(pids: list[int], limit_s: float = 120.0) -> None:
    """Wait until ``pids`` use under 5% of a core for half a second (background loading done)."""
    stop = time.perf_counter() + limit_s
    last = _cpu(pids)
    while time.perf_counter() < stop:
        time.sleep(0.5)
        now = _cpu(pids)
        if _cpu_delta(last, now) < 0.025:
            return
        last = now


def _cpu(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds used so far by each of ``pids`` that still exists."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two :func:`_cpu` readings (a process that exited meanwhile is missed)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def _postgres_processes(db_name: str) -> tuple[list[int], list[int]]:
    """Pids of (the PostgreSQL backends connected to ``db_name``, every other PostgreSQL process).

    A backend's title names its database; the others are the WAL writer (it flushes the
    impressions' asynchronous commits), the checkpointer, autovacuum and other databases' backends.
    """
    ours, other = [], []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("latin-1")
            except OSError:
                continue
            if title.startswith("postgres:"):
                (ours if f" {db_name} " in title else other).append(int(entry.name))
    return ours, other


def _machine_busy() -> float:
    """CPU seconds all cores spent not idle so far (/proc/stat: every process, the kernel, interrupts)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _memory(pid: int) -> tuple[int, float, float, str]:
    """(pid, RSS MB, PSS MB, the cores it may run on: one when gunicorn.conf.py pinned it)."""
    try:
        cores = ",".join(str(c) for c in sorted(os.sched_getaffinity(pid)))
    except OSError:
        cores = "?"
    rss = pss = float("nan")
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
    except OSError:  # the worker exited meanwhile: its figures stay NaN in the table
        rss = pss = float("nan")
    return pid, rss, pss, cores


if __name__ == "__main__":
    main()
