"""``manage.py aggregate_reports``: fills every pending day, says what it did, and is safe to re-run."""
from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from recommender.ingestion import do_ingest_events, do_upsert_items
from recommender.models import DailyItemCount, ReportDay

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("aggregate_reports", *args, stdout=out)
    return out.getvalue()


def test_fills_pending_days_oldest_first_and_never_double_counts():
    do_upsert_items([{"item_id": i, "title": f"Item {i}", "price": "2.50"} for i in "abc"])
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    # Impressions on five past days; counted once each however often the command runs.
    days = [today - timedelta(days=d) + timedelta(hours=6) for d in range(5, 0, -1)]
    do_ingest_events([
        {"user_id": "u1", "item_id": item, "event_type": "impression", "timestamp": t.isoformat(),
         "event_id": uuid.uuid4().hex}
        for t in days for item in "ab"
    ])
    out = _run("--max-days", "2")  # a bounded run: the two oldest days, and it says more remain
    assert {d.day for d in ReportDay.objects.filter(status=ReportDay.Status.FILLED)} == {t.date() for t in days[:2]}
    assert "Filled 2 day(s)" in out and "remain" in out
    out = _run()
    filled = ReportDay.objects.filter(status=ReportDay.Status.FILLED, day__lt=today.date())
    assert {d.day for d in filled} >= {t.date() for t in days}
    assert days[-1].date().isoformat() in out and "remain" not in out
    total = sum(DailyItemCount.objects.values_list("impressions", flat=True))
    assert total == 10
    _run()
    assert sum(DailyItemCount.objects.values_list("impressions", flat=True)) == 10


def test_rejects_a_useless_max_days():
    with pytest.raises(SystemExit):
        _run("--max-days", "0")


