import os
import sys
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Offline evaluation (the protocol of EVALUATION.md) of every peer and every model of the "
        "product on a dataset, tuned on validation, in one run: prints a markdown table and writes "
        "DIR/results.json, DIR/results.md, DIR/tuning.json and the NDCG@10-vs-APLT@10 PNG."
    )

    def add_arguments(self, parser):
        parser.add_argument("--events", type=Path, help="events.csv in the interchange format")
        parser.add_argument("--items", type=Path, help="items.csv in the interchange format")
        parser.add_argument("--format", choices=["csv", "online-retail"], default="csv")
        parser.add_argument("--path", type=Path, help="with --format online-retail: online_retail.parquet")
        parser.add_argument("--out", type=Path, required=True, help="folder for the results")
        parser.add_argument("--methods", default="", help="comma-separated method names (default: all)")
        parser.add_argument("--test-days", type=float, default=30)
        parser.add_argument("--no-rerank", action="store_true", help="skip the popularity-penalised re-rank curve")
        parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "shop_recs" / "embeddings")

    def handle(self, *args, events, items, format, path, out, methods, test_days, no_rerank, cache_dir, **options):
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        from recommender.ml import evaluate
        from recommender.ml.datasets import load_interchange, load_online_retail

        evaluate.register_defaults()
        chosen = [m.strip() for m in methods.split(",") if m.strip()] or None
        unknown = [m for m in chosen or [] if m not in evaluate.REGISTRY]
        if unknown:
            raise CommandError(f"Unknown method(s) {unknown}; known: {', '.join(sorted(evaluate.REGISTRY))}.")
        if format == "online-retail":
            if path is None or not path.exists():
                raise CommandError("--format online-retail needs --path pointing at online_retail.parquet.")
            data = load_online_retail(path)
        else:
            if events is None or items is None:
                raise CommandError("Give --events E.csv and --items I.csv (or --format online-retail --path FILE).")
            for f in (events, items):
                if not f.exists():
                    raise CommandError(f"{f} does not exist.")
            with tempfile.TemporaryDirectory() as tmp:
                # The loader reads a folder holding items.csv and events.csv.
                (Path(tmp) / "events.csv").symlink_to(events.resolve())
                (Path(tmp) / "items.csv").symlink_to(items.resolve())
                data = load_interchange(tmp, name=events.stem)
        for err in data.errors[:20]:
            self.stderr.write(f"rejected: {err}")
        if len(data.errors) > 20:
            self.stderr.write(f"... and {len(data.errors) - 20:,} more rejected rows")
        try:
            report = evaluate.run(
                data,
                chosen,
                test_days=test_days,
                val_days=test_days,
                cache_dir=cache_dir,
                rerank_alphas=None if no_rerank else evaluate.RERANK_ALPHAS,
                log=lambda s: print(s, file=sys.stderr, flush=True),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        paths = report.write(out)
        self.stdout.write(report.markdown())
        self.stdout.write("\n" + "\n".join(f"wrote {p}" for p in paths.values()))
