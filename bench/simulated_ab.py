"""Does the exposure policy pay? A SIMULATED A/B test on the synthetic demo shop, end to end.

    python bench/simulated_ab.py [--database-url URL] [--items 3000] [--users 1500] [--weeks 8]
                                 [--days 14] [--lists-per-day 300] [--seed 0] [--json PATH]

On a fresh PostgreSQL database: seed the synthetic demo shop, embed its titles, train the
demo-sized model (the ``demo`` command's ``DEMO_TRAINING_PARAMS``), then run the demo
experiment "Fair exposure vs no boost" (control: ``tail_boost`` 0 and ``min_tail_share`` 0;
treatment: the default fair-exposure policy; 50/50) for ``--days`` simulated days of
``--lists-per-day`` lists through the real serving path (``simulate_traffic``), aggregate, and
print per variant what the admin's experiment page shows, read through the same report
function (:func:`recommender.reports.experiments.experiment_report`).

**The shoppers are simulated** (:mod:`recommender.demo.response`): they click and buy by the
synthetic generator's rules. The figures say how the policies fare in that made-up world and
that the machinery measures it; they are not evidence about real shoppers.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import bench_env, fresh_database, machine, manage, print_table, write_json  # noqa: E402


def _ci(low, high) -> str:
    return "-" if low is None else f"[{low:.4g}, {high:.4g}]"


def _num(x, fmt: str = ".4g") -> str:
    return "-" if x is None else format(x, fmt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default=os.environ.get(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/shop_recs_simab"))
    ap.add_argument("--items", type=int, default=3_000)
    ap.add_argument("--users", type=int, default=1_500)
    ap.add_argument("--weeks", type=int, default=8)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--lists-per-day", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0, help="seed of the simulated visits (the shop uses seed 0)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    timings: dict[str, float] = {}
    t = time.perf_counter()
    url = fresh_database(args.database_url)
    timings["migrate"] = time.perf_counter() - t
    os.environ.update(bench_env(url))
    artifacts = Path(os.environ.get("TMPDIR", "/tmp")) / "simulated_ab_artifacts"
    os.environ.setdefault("RECOMMENDER_ARTIFACT_DIR", str(artifacts))
    import django

    django.setup()
    from recommender.management.commands.demo import DEMO_TRAINING_PARAMS

    shop = ["--items", str(args.items), "--users", str(args.users), "--weeks", str(args.weeks), "--seed", "0"]
    for step, cmd in (
        ("seed_demo", ["seed_demo", *shop, "--verbosity", "0"]),
        ("embed_items", ["embed_items"]),
        ("train", ["train", "--params", json.dumps(DEMO_TRAINING_PARAMS)]),
    ):
        t = time.perf_counter()
        out = manage(*cmd, database_url=url)
        timings[step] = time.perf_counter() - t
        print(f"{step}: {timings[step]:.0f} s", flush=True)
        if step == "train":
            print("\n".join(line for line in out.splitlines() if "NDCG" in line or "Run " in line)[-800:])

    from django.utils import timezone

    from recommender.demo.simulate import DEMO_EXPERIMENT, ShopParams, do_simulate_traffic
    from recommender.models import Experiment, ModelVersion
    from recommender.reports.experiments import experiment_report

    active = ModelVersion.objects.filter(is_active=True).values_list("name", flat=True).first()
    t = time.perf_counter()
    sim = do_simulate_traffic(
        args.days, args.lists_per_day, seed=args.seed, experiment=DEMO_EXPERIMENT,
        shop=ShopParams(args.items, args.users, args.weeks, 0),
        progress=lambda day, n: print(f"  {day}: {n} lists", flush=True),
    )
    timings["simulate_and_aggregate"] = time.perf_counter() - t
    print("\n".join(sim.summary_lines()))

    t = time.perf_counter()
    report = experiment_report(Experiment.objects.get(name=DEMO_EXPERIMENT), timezone.now().date())
    timings["report"] = time.perf_counter() - t

    title = (f"SIMULATED A/B: '{DEMO_EXPERIMENT}', {args.days} days x {args.lists_per_day} lists, "
             f"{args.items:,} items / {args.users:,} shoppers, model {active or 'none (fallbacks)'}")
    print_table(
        title + " - per variant",
        ["variant", "policy", "users", "impressions", "tail share of impr.", "clicks/impr.", "95% CI",
         "revenue/user", "95% CI", "revenue lift", "p"],
        [[v["variant"], v["policy"], v["users"], v["impressions"], _num(v["tail_share_of_impressions"], ".1%"),
          _num(v["clicks_per_impression"]), _ci(v["clicks_per_impression_low"], v["clicks_per_impression_high"]),
          _num(v["revenue_per_user"], ".3f"), _ci(v["revenue_per_user_low"], v["revenue_per_user_high"]),
          _num(v["revenue_lift"], "+.1%"), _num(v["revenue_p_value"], ".3f")]
         for v in report.variants],
    )
    print_table(
        "per-user rates (share of exposed users who did it at least once), against the control",
        ["variant", "metric", "users who", "users", "rate", "95% CI", "lift", "lift 95% CI", "p", "verdict"],
        [[r["variant"], r["metric_label"], r["users_who"], r["users"], _num(r["rate"], ".2%"), _ci(r["low"], r["high"]),
          _num(r["lift"], "+.1%"), _ci(r["lift_low"], r["lift_high"]), _num(r["p_value"], ".3f"), r["verdict"]]
         for r in report.rates],
    )
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"\nSIMULATED shoppers (synthetic rules), not evidence about real shoppers. {machine()}; uptime: {load}")
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    write_json(args.json, {
        "simulated": True,
        "params": vars(args),
        "model_version": active,
        "variants": report.variants,
        "rates": report.rates,
        "simulation": {k: getattr(sim, k) for k in ("lists_served", "impressions", "events_stored", "fallback_lists",
                                                     "by_variant", "notes")},
        "timings_s": timings,
        "machine": machine(),
        "uptime": load,
    })


if __name__ == "__main__":
    main()
