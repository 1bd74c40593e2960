"""The exposure policy (recommender.ranking.policy.rerank) per request, next to a bare
``np.argpartition`` top-k over the same scores (the floor: any ranking has to find the
top k at least once).

    python bench/policy_micro.py [--calls 400] [--items 100000] [--json PATH]

Prints the median and 90th percentile wall time per call in microseconds over ``--calls``
calls of each case, and the median as a multiple of the floor, with one BLAS thread (as a
serving process should run). Target: a top-20 from ~500 candidates with MMR over 64-dim
vectors in well under 1 ms. A table, not a pass/fail test: read it on a quiet machine.

When the C greedy fill is built (``policy.ACCELERATED``), each case also runs with the numpy
reference fill, interleaved call by call, and the table gives the compiled / numpy ratio.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

# As in a serving process: one BLAS thread (set before numpy loads its BLAS).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import machine, median, print_table, write_json  # noqa: E402
from recommender.ranking import policy as policy_module  # noqa: E402
from recommender.ranking.policy import (  # noqa: E402
    CatalogArrays,
    PolicyConfig,
    Promotion,
    RequestFilters,
    rerank,
)
from recommender.ranking.segments import head_mask  # noqa: E402

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)  # a fixed clock
SIZES = [(100, 10), (500, 20), (2_000, 50)]


def synthetic_catalog(n_items: int, dim: int, seed: int = 0) -> CatalogArrays:
    """A shop-like catalog: Zipf interactions (20% head), 40 categories, 5% out of stock."""
    rng = np.random.default_rng(seed)
    counts = np.minimum(rng.zipf(1.5, n_items), 10_000)
    return CatalogArrays(
        is_head=head_mask(counts, 0.2),
        category=rng.integers(0, 40, n_items),
        price=rng.lognormal(3.0, 1.0, n_items),
        in_stock=rng.random(n_items) > 0.05,
        impressions_today=rng.poisson(20, n_items),
        ever_shown=rng.random(n_items) > 0.1,
        vectors=rng.standard_normal((n_items, dim)).astype(np.float32),
    )


def policies(n_items: int, seed: int = 0) -> dict[str, PolicyConfig]:
    rng = np.random.default_rng(seed)
    # 20 promotions, half on items and half on categories; some over, some not yet begun.
    starts = [NOW + timedelta(days=int(d)) for d in rng.integers(-5, 2, 20)]
    promos = tuple(
        Promotion(
            boost=float(rng.uniform(0.2, 1.5)),
            item=int(rng.integers(n_items)) if i % 2 else None,
            category=None if i % 2 else int(rng.integers(40)),
            start=start,
            end=start + timedelta(days=int(rng.integers(1, 6))),
        )
        for i, start in enumerate(starts)
    )
    rules = dict(
        tail_boost=0.5,
        min_tail_share=0.3,
        exploration_positions=(4, 9),
        promotions=promos,
        pinned=tuple(int(i) for i in rng.integers(0, n_items, 3)),
        buried=tuple(int(i) for i in rng.integers(0, n_items, 50)),
        daily_impression_cap=40,
        item_impression_caps={int(i): 5 for i in rng.integers(0, n_items, 20)},
    )
    return {
        "filters only": PolicyConfig(),
        "boost + quota": PolicyConfig(tail_boost=0.5, min_tail_share=0.3),
        "all rules, no MMR": PolicyConfig(**rules),
        "all rules + MMR 0.3": PolicyConfig(diversity=0.3, **rules),
    }


def time_calls(fn, calls: int) -> list[float]:
    fn()  # warm caches and lazy imports
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def time_pair(fn, calls: int) -> tuple[list[float], list[float]]:
    """``fn`` with the compiled fill and with the numpy one, alternating call by call."""
    compiled = policy_module._greedy
    out: tuple[list[float], list[float]] = ([], [])
    try:
        for i in range(2 * calls + 2):
            policy_module._greedy = compiled if i % 2 == 0 else None
            t0 = time.perf_counter()
            fn()
            if i >= 2:  # the first of each: caches and lazy imports
                out[i % 2].append((time.perf_counter() - t0) * 1e6)
    finally:
        policy_module._greedy = compiled
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    catalog = synthetic_catalog(args.items, args.dim)
    rng = np.random.default_rng(1)
    request = RequestFilters(min_price=1.0, max_price=500.0)
    rows, results = [], []
    for n, k in SIZES:
        candidates = rng.choice(args.items, n, replace=False)
        scores = rng.standard_normal(n).astype(np.float32)
        bought = rng.choice(args.items, 30, replace=False)

        def floor() -> None:
            top = np.argpartition(-scores, k - 1)[:k]
            candidates[top[np.argsort(-scores[top])]]

        floor_us = time_calls(floor, args.calls)
        base = median(floor_us)
        p90 = float(np.percentile(floor_us, 90))
        nan = float("nan")
        rows.append([n, k, "np.argpartition top-k (floor)", base, p90, 1.0, nan, nan])
        for name, policy in policies(args.items).items():

            def call(policy=policy) -> None:
                rerank(candidates, scores, catalog, policy, k, NOW, request=request, bought=bought)

            if policy_module.ACCELERATED:
                us, ref = time_pair(call, args.calls)
                ref_median = median(ref)
            else:
                us, ref_median = time_calls(call, args.calls), nan
            rows.append([n, k, name, median(us), float(np.percentile(us, 90)), median(us) / base,
                         ref_median, median(us) / ref_median])
        keys = ["candidates", "k", "case", "median_us", "p90_us", "x_floor", "numpy_fill_median_us",
                "x_numpy_fill"]
        results.extend(dict(zip(keys, r)) for r in rows[-5:])

    fill = "compiled" if policy_module.ACCELERATED else "numpy (the C extension is not built)"
    print_table(
        f"rerank per call, {args.items:,} items, {args.dim}-dim vectors, greedy fill {fill} ({machine()})",
        ["candidates", "k", "case", "median µs", "p90 µs", "× floor", "numpy fill median µs",
         "× numpy fill"],
        rows,
    )
    payload = {"machine": machine(), "items": args.items, "dim": args.dim, "rows": results}
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
