import json
import os
import signal
import subprocess
import sys

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from recommender.api.apikeys import do_create_api_key
from recommender.demo.simulate import DEMO_EXPERIMENT
from recommender.models import APIKey, Item, ModelVersion

DEMO_TRAINING_PARAMS = {"n_models": 1, "epochs": 4, "max_examples": 40_000}
#: A week of SIMULATED shopper visits under the demo A/B experiment (about 10-20 s on 2 cores).
DEMO_SIMULATION = {"days": 7, "lists_per_day": 60, "experiment": DEMO_EXPERIMENT}


class Command(BaseCommand):
    help = (
        "Run the demo: migrate, generate the SYNTHETIC demo shop, run every pipeline step, "
        "create the demo-only admin/admin login and an API key, start a Celery worker with "
        "beat, and serve on 127.0.0.1. Demo only: never use this in production."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-serve", action="store_true", help="Prepare everything, then exit.")
        parser.add_argument("--items", type=int, default=3_000, help="Size of the synthetic shop.")
        parser.add_argument("--users", type=int, default=1_500)
        parser.add_argument("--weeks", type=int, default=8)

    def handle(self, *args, port: int, no_serve: bool, items: int, users: int, weeks: int, **options):
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database migrated.")
        # The pipeline, step by step: collect (synthetic) behaviour, embed item text, learn.
        if Item.objects.exists():
            self.stdout.write("Demo shop already present (synthetic data); not regenerating.")
        else:
            call_command("seed_demo", items=items, users=users, weeks=weeks, stdout=self.stdout, stderr=self.stderr)
        call_command("embed_items", stdout=self.stdout, stderr=self.stderr)
        if not ModelVersion.objects.filter(is_active=True).exists():
            self.stdout.write("Training the first model (the Celery worker retrains it nightly)...")
            # A lighter configuration than production's so that the demo starts in minutes.
            call_command("train", params=json.dumps(DEMO_TRAINING_PARAMS), stdout=self.stdout, stderr=self.stderr)
        # SIMULATED shoppers (the synthetic world's rules) visit through the real serving path under
        # the demo A/B experiment, so the exposure and experiment pages show attributed figures.
        try:
            call_command("simulate_traffic", **DEMO_SIMULATION, shop_items=items, shop_users=users, shop_weeks=weeks,
                         no_aggregate=True, stdout=self.stdout, stderr=self.stderr)  # aggregate_reports follows
        except CommandError as exc:  # e.g. a shop kept in var/ from a start with other sizes
            self.stdout.write(f"Simulated traffic skipped: {exc}")
        # The report pages read count tables; fill them now rather than at the worker's first beat.
        call_command("aggregate_reports", stdout=self.stdout, stderr=self.stderr)
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", "admin")
        APIKey.objects.filter(name="demo").delete()
        _, key = do_create_api_key("demo", "ingest,recommend,reports")
        base = f"http://127.0.0.1:{port}"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "=" * 72,
                    "Long-tail recommender demo (SYNTHETIC shop data, generated locally)",
                    f"  Admin:     {base}/admin/   login admin / admin (demo only)",
                    f"  API docs:  {base}/api/docs/",
                    f"  Health:    {base}/healthz",
                    f"  API key:   {key}",
                    f"  A/B test:  {base}/admin/insights/experiments/  (SIMULATED shopper traffic, not real shoppers)",
                    f"  Try:       curl -H 'Authorization: Bearer {key}' {base}/api/v1/items/<item id>",
                    "=" * 72,
                    "",
                ]
            )
        )
        if no_serve:
            return
        worker = self._start_worker()
        try:
            call_command("runserver", f"127.0.0.1:{port}", use_reloader=False, use_threading=True)
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    worker.kill()

    def _start_worker(self) -> subprocess.Popen:
        """A real Celery worker with embedded beat; the broker is a folder unless CELERY_BROKER_URL is set."""
        cmd = [
            sys.executable, "-m", "celery", "-A", "shop_recs", "worker", "--beat", "--pool", "solo",
            "--loglevel", "INFO", "--scheduler", settings.CELERY_BEAT_SCHEDULER,
            "--schedule", str(settings.VAR_DIR / "celerybeat-schedule"),
        ]
        log = open(settings.VAR_DIR / "worker.log", "ab")
        self.stdout.write(f"Celery worker started (broker {settings.CELERY_BROKER_URL}); log: {log.name}")
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
