from django.core.management.base import BaseCommand
from django.utils import timezone

from recommender.reports.aggregation import do_aggregate_pending


class Command(BaseCommand):
    help = (
        "Fill the report count tables: every day not yet filled (or re-opened by late events), oldest "
        "first, one transaction per day. The Celery beat job runs the same function; running it twice "
        "never double counts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--max-days", type=int, default=400, help="Fill at most this many days in this run.")

    def handle(self, *args, max_days: int, **options):
        if max_days < 1:
            self.stderr.write("--max-days must be at least 1.")
            raise SystemExit(2)
        result = do_aggregate_pending(timezone.now(), max_days=max_days)
        if result.reopened:
            self.stdout.write(f"Re-opened by late events: {', '.join(map(str, result.reopened))}")
        for day in result.filled:
            self.stdout.write(f"{day.day}: {day.status}, {day.events:,} events -> {day.rows:,} count rows")
        events = sum(d.events for d in result.filled)
        self.stdout.write(f"Filled {len(result.filled):,} day(s) from {events:,} events.")
        if result.remaining:
            self.stdout.write(f"{result.remaining:,} day(s) remain: run the command again (or let the beat job do it).")
