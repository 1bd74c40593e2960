"""The periodic jobs are installed once after migrate and stay editable in the admin."""
from __future__ import annotations

import pytest
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from recommender.schedule import BEAT_SCHEDULE, do_install_default_schedule

pytestmark = pytest.mark.django_db


def test_migrate_installed_every_default_job():
    names = set(PeriodicTask.objects.values_list("name", flat=True))
    assert set(BEAT_SCHEDULE) <= names
    retrain = PeriodicTask.objects.get(name="recommender-nightly-retrain")
    assert retrain.task == "recommender.scheduled_retrain"
    assert (retrain.crontab.hour, retrain.crontab.minute) == ("3", "15")


def test_an_admins_edit_survives_reinstalling():
    # given an admin moved the nightly retrain to 01:30 and disabled the embed sweep
    task = PeriodicTask.objects.get(name="recommender-nightly-retrain")
    task.crontab = CrontabSchedule.objects.create(hour="1", minute="30", timezone="UTC")
    task.save()
    PeriodicTask.objects.filter(name="recommender-embed-sweep").update(enabled=False)
    # when the defaults are installed again (every migrate does)
    assert do_install_default_schedule() == []
    # then nothing of theirs was overwritten
    task.refresh_from_db()
    assert (task.crontab.hour, task.crontab.minute) == ("1", "30")
    assert not PeriodicTask.objects.get(name="recommender-embed-sweep").enabled
    # and a deleted job comes back
    PeriodicTask.objects.filter(name="recommender-aggregate-reports").delete()
    assert do_install_default_schedule() == ["recommender-aggregate-reports"]
