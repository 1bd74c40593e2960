"""Offline evaluation of every registered method on Online Retail (or an interchange folder).

Follows EVALUATION.md: global temporal split (test = last 30 days), hyper-parameters tuned on
the last 30 days of training only, refit, then test. The project's own model ("main") is also
reported with the exposure policy (its top 100 re-ranked; a curve over tail_boost plus the
product's default policy, and a curve over exposure_spreading served as one simulated day),
reusing the fitted model. Prints the markdown table and writes
results.md, results.json, tuning.json and ndcg_vs_aplt.png to --out. No Django.

    .venv/bin/python bench/offline_eval.py                       # all methods, Online Retail
    .venv/bin/python bench/offline_eval.py --methods EASE,RecentPop --out /tmp/eval
    .venv/bin/python bench/offline_eval.py --exclude main   # peers only: a few minutes on 2 cores
    .venv/bin/python bench/offline_eval.py --methods main --no-rerank --out /tmp/eval_main  # main + policy rows
    .venv/bin/python bench/offline_eval.py --data-dir path/to/folder_with_items_and_events_csv
    .venv/bin/python bench/offline_eval.py --methods main --until 2011-07-01  # a back-test in summer
"""
from __future__ import annotations

import os

# One BLAS/OpenMP thread per process: the machines this runs on are shared. Set before numpy.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recommender.ml import evaluate  # noqa: E402
from recommender.ml.datasets import load_dataset  # noqa: E402

DEFAULT_DATA = REPO / ".." / "shared" / "datasets" / "online-retail-uci"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                    help="online_retail.parquet (or its folder), or a folder with items.csv + events.csv")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "offline_eval",
                    help="folder for results.md, results.json, tuning.json, ndcg_vs_aplt.png")
    ap.add_argument("--methods", default="", help="comma-separated method names (default: all registered)")
    ap.add_argument("--exclude", default="", help="comma-separated method names to leave out (e.g. main)")
    ap.add_argument("--json", type=Path, default=None, help="also copy results.json here")
    ap.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "shop_recs" / "embeddings",
                    help="text embedding cache (keyed by text hash)")
    ap.add_argument("--no-rerank", action="store_true", help="skip the popularity-penalised re-rank curve")
    ap.add_argument("--no-policy", action="store_true",
                    help="skip the exposure-policy rows (curve over tail_boost + default policy) of main")
    ap.add_argument("--spreadings", default=",".join(str(v) for v in evaluate.POLICY_SPREADINGS),
                    help="exposure_spreading strengths of the policy's spreading curve (comma-separated; "
                         "'' for none); each serves the test users as one simulated day")
    ap.add_argument("--until", default=None, metavar="YYYY-MM-DD",
                    help="evaluate as if the log had ended on this day (UTC, exclusive): a back-test at "
                         "another time of the year")
    args = ap.parse_args(argv)

    import torch  # the main model's dependency (the ml extra)

    torch.set_num_threads(1)
    if not args.data_dir.exists():
        print(f"{args.data_dir} does not exist; pass --data-dir.", file=sys.stderr)
        return 2
    evaluate.register_defaults()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] or list(evaluate.REGISTRY)
    excluded = [m.strip() for m in args.exclude.split(",") if m.strip()]
    unknown = [m for m in methods + excluded if m not in evaluate.REGISTRY]
    if unknown:
        print(f"unknown method(s) {unknown}; known: {sorted(evaluate.REGISTRY)}", file=sys.stderr)
        return 2
    methods = [m for m in methods if m not in excluded]
    t0 = time.perf_counter()
    data = load_dataset(args.data_dir)
    if args.until:
        try:
            until = datetime.strptime(args.until, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError:
            print(f"--until {args.until!r} is not a date; write it as YYYY-MM-DD.", file=sys.stderr)
            return 2
        data = data.ending(int(until.timestamp()))
    for err in data.errors[:20]:
        print(f"rejected: {err}", file=sys.stderr)
    if len(data.errors) > 20:
        print(f"... and {len(data.errors) - 20} more rejected rows", file=sys.stderr)
    report = evaluate.run(
        data,
        methods,
        cache_dir=args.cache_dir,
        rerank_alphas=None if args.no_rerank else evaluate.RERANK_ALPHAS,
        policy_boosts=None if args.no_policy else evaluate.POLICY_BOOSTS,
        policy_spreadings=[float(v) for v in args.spreadings.split(",") if v.strip()],
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    paths = report.write(args.out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(paths["json"], args.json)
    print(report.markdown())
    print(f"\nwrote {', '.join(str(p) for p in paths.values())} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
