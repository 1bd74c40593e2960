import json

from django.core.management.base import BaseCommand, CommandError

from recommender.training.locks import LockBusy
from recommender.training.pipeline import MODEL_KINDS, do_queue_training, do_train


class Command(BaseCommand):
    help = (
        "Train a model version on the behaviour log, evaluate it on a temporal validation split, "
        "and activate it if it passes the quality gate (or --force). Runs here unless --async."
    )

    def add_arguments(self, parser):
        parser.add_argument("--kind", choices=MODEL_KINDS, default=None)
        parser.add_argument("--params", default="{}", help='JSON of model parameters, e.g. \'{"epochs": 3}\'.')
        parser.add_argument("--force", action="store_true", help="Activate even if the quality gate refuses it.")
        parser.add_argument("--async", dest="run_async", action="store_true", help="Queue it for a Celery worker.")

    def handle(self, *args, kind, params, force, run_async, **options):
        try:
            extra = json.loads(params)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not valid JSON ({exc}); example: --params '{{\"epochs\": 3}}'") from None
        if kind:
            extra["kind"] = kind
        run = do_queue_training("command", force=force, params=extra)
        if run_async:
            from recommender.tasks import train_model

            train_model.delay(run.pk)
            self.stdout.write(f"Queued training run {run.pk}; follow it in the admin (Training runs).")
            return
        try:
            run = do_train(run.pk)
        except LockBusy:
            raise CommandError("Another training run is in progress; try again when it finishes.") from None
        self.stdout.write(run.log)
        if run.status == "failed":
            raise CommandError(f"Training failed: {run.error.splitlines()[0] if run.error else 'see the log above'}")
        mv = run.model_version
        self.stdout.write(f"Run {run.pk}: {run.status}; model version {mv.name if mv else '-'}"
                          f"{' (active)' if mv and mv.is_active else ''}.")
