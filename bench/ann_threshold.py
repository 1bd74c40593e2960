"""Where the hnswlib graph starts to pay: exact numpy vs graph search by catalog size x dimension.

    python bench/ann_threshold.py [--sizes 20000,50000,100000,200000] [--dims 64,128]
                                  [--queries 300] [--json PATH]
                                  [--faiss-sizes 100000x64,200000x128] [--nprobes 8,16,32]
                                  [--tables threshold,tail,blocking,faiss]

For each catalog (clustered random vectors, as bench/serving.py writes them: 50 centres plus
noise) it builds the graph exactly as serving does (``VectorIndex(..., ann_min_cells=1)``:
a background thread, one build thread, M=16, ef_construction=100, ef=256) and times one
top-200 search per query, one thread, on both paths of :meth:`VectorIndex.search`:

* exact: the numpy product over all items and the sampled top-200;
* graph: hnswlib's 200 neighbours, re-scored exactly (what serving now does).

It prints p50/p99 per query, the graph's speed-up at p50, its recall of the exact top-200
and of the exact top-20 (the candidates the policy would most likely place), the build time
and the graph's size (hnswlib's saved index: what each process holds privately, unlike the
memory-mapped vectors that workers share). ``SERVING_ANN_MIN_CELLS`` (recommender/conf.py)
is chosen from this table.

A second table measures the tail back-up on 100k x 64 with a head-biased model (head items'
vectors scaled by 1.6, so the top 200 hold no tail items and the back-up always runs),
n_tail=100: exact path vs graph path, and hnswlib's ``filter=`` as the rejected alternative.
A third times exact searches in the main thread while a graph builds in the background
(hnswlib releases the GIL while it adds items: the cost is a busy core, not a blocked worker).

A fourth table (when faiss-cpu is installed; else one line says it is not) compares the libraries
on the same vectors and queries (--faiss-sizes): exact numpy, hnswlib HNSW (reusing the first
table's graph), faiss IndexHNSWFlat (M=16, efConstruction=100, efSearch=256) and faiss
IndexIVFFlat (nlist ~ 4 sqrt(n), one row per --nprobes), all inner product, one thread, one
top-200 query at a time: p50/p99, recall@200 and exact top-20 found, build s, serialized MB.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread, as serving sets it

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import machine, print_table, write_json  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_recs.test_settings")  # the serving package imports models; no database is used
import django  # noqa: E402

django.setup()
from recommender.serving.index import VectorIndex  # noqa: E402

N = 200  # SERVING_CANDIDATES


def clustered(n: int, d: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    return (centers[rng.integers(0, len(centers), n)] + 0.5 * rng.normal(size=(n, d))).astype(np.float32)


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) * 1e3 if xs else float("nan")


def build_graph(index_vectors: np.ndarray, pks: np.ndarray) -> tuple[VectorIndex, float]:
    t = time.perf_counter()
    graph = VectorIndex("graph", index_vectors, pks, ann_min_cells=1)
    while not graph.uses_ann:
        time.sleep(0.01)
    return graph, time.perf_counter() - t


def graph_mb(graph: VectorIndex) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "g.bin")
        graph._ann.save_index(path)
        return os.path.getsize(path) / 2**20


def timed(fn, queries: np.ndarray) -> tuple[list[float], list]:
    times, out = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(fn(q))
        times.append(time.perf_counter() - t)
    return times, out


def threshold_rows(sizes: list[int], dims: list[int], n_queries: int, seed: int,
                   keep: dict | None = None) -> list[list]:
    """``keep``: {(n, d): None} whose graphs (hnswlib index, build s, MB) are kept for the faiss table."""
    rows = []
    for d in dims:
        for n in sizes:
            rng = np.random.default_rng(seed)
            centers = rng.normal(size=(50, d)).astype(np.float32)
            items, queries = clustered(n, d, rng, centers), clustered(n_queries, d, rng, centers)
            pks = np.arange(n, dtype=np.int64)
            exact = VectorIndex("exact", items, pks)
            graph, build_s = build_graph(items, pks)
            for q in queries[:20]:  # warm up both
                exact.search(q, N), graph.search(q, N)
            t_exact, r_exact = timed(lambda q: exact.search(q, N)[0], queries)
            t_graph, r_graph = timed(lambda q: graph.search(q, N)[0], queries)
            rec200 = np.mean([len(set(a.tolist()) & set(b.tolist())) / N for a, b in zip(r_exact, r_graph)])
            rec20 = np.mean([len(set(a[:20].tolist()) & set(b.tolist())) / 20 for a, b in zip(r_exact, r_graph)])
            rows.append([
                n, d, f"{n * d / 1e6:.1f}M", pct(t_exact, 50), pct(t_exact, 99), pct(t_graph, 50), pct(t_graph, 99),
                pct(t_exact, 50) / pct(t_graph, 50), float(rec200), float(rec20), build_s, graph_mb(graph),
            ])
            if keep is not None and (n, d) in keep:
                keep[n, d] = (graph._ann, build_s, rows[-1][-1])
            print(f"  {n} x {d}: done", file=sys.stderr, flush=True)
            del graph
    return rows


def tail_rows(n_queries: int, seed: int) -> list[list]:
    n, d, n_tail = 100_000, 64, 100
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(50, d)).astype(np.float32)
    items, queries = clustered(n, d, rng, centers), clustered(n_queries, d, rng, centers)
    head = np.zeros(n, dtype=bool)
    head[rng.choice(n, n // 5, replace=False)] = True
    items[head] *= 1.6  # a popularity-biased model
    pks = np.arange(n, dtype=np.int64)
    exact = VectorIndex("exact", items, pks)
    graph, _ = build_graph(items, pks)

    def run(index: VectorIndex):
        # a fresh ~head per call, as services._search builds it
        return lambda q: index.search(q, N, tail=~head, min_tail=8, n_tail=n_tail)[0]

    t_e, r_e = timed(run(exact), queries)
    t_g, r_g = timed(run(graph), queries)
    tail_idx = np.flatnonzero(~head)

    def best_tail(q: np.ndarray, top: np.ndarray) -> set:
        """The exact best n_tail tail items not in ``top``: what the back-up must return."""
        order = tail_idx[np.argsort(-(items[tail_idx] @ q), kind="stable")]
        return set(order[~np.isin(order, top)][:n_tail].tolist())

    def same(rows: list, top_len: int) -> float:
        """Mean recall over the queries where a back-up was appended (too little tail in the top)."""
        got = [len(best_tail(q, r[:top_len]) & set(r[top_len:].tolist())) / n_tail
               for q, r in zip(queries, rows) if len(r) > top_len]
        return float(np.mean(got)) if got else float("nan")

    def ran(rows: list, top_len: int) -> float:
        return float(np.mean([len(r) > top_len for r in rows]))

    backup_exact, backup_graph = same(r_e, N), same(r_g, N)
    in_top = np.median([int((~head)[b[:N]].sum()) for b in r_g])
    t_plain, _ = timed(lambda q: graph.search(q, N)[0], queries)
    tail_list = (~head).tolist()
    ann = graph._ann
    t_f, r_f = timed(lambda q: ann.knn_query(q, k=n_tail, filter=lambda i: tail_list[i], num_threads=1)[0][0], queries)
    filt_same = same(r_f, 0)
    return [
        ["exact + back-up", pct(t_e, 50), pct(t_e, 99), ran(r_e, N), backup_exact, in_top],
        ["graph, no back-up (before)", pct(t_plain, 50), pct(t_plain, 99), 0.0, float("nan"), in_top],
        ["graph + exact tail back-up", pct(t_g, 50), pct(t_g, 99), ran(r_g, N), backup_graph, in_top],
        ["hnswlib filter= top-100 tail (rejected)", pct(t_f, 50), pct(t_f, 99), 1.0, filt_same, in_top],
    ]


def build_blocking_rows(n_queries: int, seed: int) -> list[list]:
    n, d = 100_000, 64
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(50, d)).astype(np.float32)
    items, queries = clustered(n, d, rng, centers), clustered(n_queries, d, rng, centers)
    exact = VectorIndex("exact", items, np.arange(n, dtype=np.int64))
    t_idle, _ = timed(lambda q: exact.search(q, N), queries)
    graph = VectorIndex("graph", items, np.arange(n, dtype=np.int64), ann_min_cells=1)
    t_busy: list[float] = []
    while not graph.uses_ann:
        t_busy += timed(lambda q: exact.search(q, N), queries[:20])[0]
    return [["idle", pct(t_idle, 50), pct(t_idle, 99), len(t_idle)],
            ["while a graph builds in a thread", pct(t_busy, 50), pct(t_busy, 99), len(t_busy)]]


def faiss_rows(shapes: list[tuple[int, int]], nprobes: list[int], n_queries: int, seed: int,
               graphs: dict | None = None) -> list[list]:
    """hnswlib vs faiss (HNSW and IVF) on the same catalogs and queries, raw library calls, one thread.

    ``graphs``: hnswlib graphs the threshold table already built on the same vectors (same
    seed, same parameters), reused instead of building them again.
    """
    import faiss
    import hnswlib

    faiss.omp_set_num_threads(1)
    rows = []
    for n, d in shapes:
        rng = np.random.default_rng(seed)
        centers = rng.normal(size=(50, d)).astype(np.float32)
        items, queries = clustered(n, d, rng, centers), clustered(n_queries, d, rng, centers)
        exact = VectorIndex("exact", items, np.arange(n, dtype=np.int64))
        shape = f"{n // 1000}k x {d}"

        def measure(name: str, fn, build_s: float, mb: float) -> None:
            for q in queries[:20]:  # warm up
                fn(q)
            t, got = timed(fn, queries)
            rec200 = np.mean([len(set(a.tolist()) & set(b.tolist())) / N for a, b in zip(r_exact, got)])
            rec20 = np.mean([len(set(a[:20].tolist()) & set(b.tolist())) / 20 for a, b in zip(r_exact, got)])
            rows.append([shape, name, pct(t, 50), pct(t, 99), float(rec200), float(rec20), build_s, mb])

        for q in queries[:20]:
            exact.search(q, N)
        t_exact, r_exact = timed(lambda q: exact.search(q, N)[0], queries)
        rows.append([shape, "exact numpy (MB: the shared vectors)", pct(t_exact, 50), pct(t_exact, 99), 1.0, 1.0,
                     0.0, items.nbytes / 2**20])

        if (graphs or {}).get((n, d)) is not None:
            hn, build_s, mb = graphs.pop((n, d))
        else:
            t = time.perf_counter()
            hn = hnswlib.Index(space="ip", dim=d)
            hn.init_index(max_elements=n, ef_construction=100, M=16, random_seed=0)
            hn.add_items(items, np.arange(n), num_threads=1)
            hn.set_ef(256)
            build_s = time.perf_counter() - t
            with tempfile.TemporaryDirectory() as tmp:
                hn.save_index(os.path.join(tmp, "h.bin"))
                mb = os.path.getsize(os.path.join(tmp, "h.bin")) / 2**20
        hn.set_num_threads(1)
        measure("hnswlib HNSW M=16 ef=256", lambda q: hn.knn_query(q, k=N, num_threads=1)[0][0], build_s, mb)
        del hn

        t = time.perf_counter()
        fh = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
        fh.hnsw.efConstruction = 100
        fh.add(items)
        fh.hnsw.efSearch = 256
        build_s = time.perf_counter() - t
        mb = faiss.serialize_index(fh).nbytes / 2**20
        measure("faiss HNSWFlat M=16 ef=256", lambda q: fh.search(q[None], N)[1][0], build_s, mb)
        del fh

        nlist = int(round(4 * np.sqrt(n)))
        t = time.perf_counter()
        quantizer = faiss.IndexFlatIP(d)
        ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(items)  # faiss samples at most 256 x nlist training points
        ivf.add(items)
        build_s = time.perf_counter() - t
        mb = faiss.serialize_index(ivf).nbytes / 2**20
        for nprobe in nprobes:
            ivf.nprobe = nprobe
            measure(f"faiss IVFFlat nlist={nlist} nprobe={nprobe}", lambda q: ivf.search(q[None], N)[1][0],
                    build_s, mb)
        del ivf, quantizer
        print(f"  faiss {n} x {d}: done", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="20000,50000,100000,200000")
    ap.add_argument("--dims", default="64,128")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--faiss-sizes", default="100000x64,200000x128",
                    help="items x dim catalogs of the faiss table; empty to skip it")
    ap.add_argument("--nprobes", default="8,16,32", help="faiss IVF nprobe values, one row each")
    ap.add_argument("--tables", default="threshold,tail,blocking,faiss", help="which tables to run")
    ap.add_argument("--json")
    args = ap.parse_args()
    tables = set(args.tables.split(","))
    try:
        import hnswlib  # noqa: F401
    except ImportError:
        sys.exit("hnswlib is not installed: pip install hnswlib (the graph path is optional).")
    sizes = [int(s) for s in args.sizes.split(",")]
    dims = [int(s) for s in args.dims.split(",")]
    print(f"machine: {machine()}, hnswlib {version('hnswlib')}, one BLAS thread, top-{N}")
    rows = tails = blocking = faiss_table = None
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.faiss_sizes.split(",") if s.strip()]
    graphs = {shape: None for shape in shapes} if "faiss" in tables else None
    if "threshold" in tables:
        rows = threshold_rows(sizes, dims, args.queries, args.seed, keep=graphs)
        print_table(
            "exact vs graph top-200 per query (ms)",
            ["items", "dim", "cells", "exact p50", "exact p99", "graph p50", "graph p99", "speed-up p50",
             "recall@200", "exact top-20 found", "build s", "graph MB"],
            rows,
        )
    if "tail" in tables:
        tails = tail_rows(args.queries, args.seed)
        print_table(
            "tail back-up, 100k x 64, head-biased model, n_tail=100 (ms)",
            ["path", "p50", "p99", "back-up ran", "back-up recall of best 100 tail not in top", "tail in graph top-200 (median)"],
            tails,
        )
    if "blocking" in tables:
        blocking = build_blocking_rows(args.queries, args.seed)
        print_table("exact top-200 in the main thread (ms)", ["while", "p50", "p99", "queries"], blocking)
    if "faiss" in tables and shapes:
        try:
            import logging

            logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its notes on loading AVX2
            import faiss  # noqa: F401
        except ImportError:
            print("\nfaiss is not installed (pip install faiss-cpu): the faiss table is skipped.")
        else:
            faiss_table = faiss_rows(shapes, [int(p) for p in args.nprobes.split(",")], args.queries, args.seed,
                                     graphs)
            print_table(
                f"hnswlib vs faiss, one query at a time, top-{N}, one thread (ms; faiss {version('faiss-cpu')})",
                ["catalog", "library / index", "p50", "p99", "recall@200", "exact top-20 found", "build s", "index MB"],
                faiss_table,
            )
    write_json(args.json, {"threshold": rows, "tail": tails, "blocking": blocking, "faiss": faiss_table})


if __name__ == "__main__":
    main()
