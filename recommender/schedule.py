"""All periodic jobs in one place, installed once into django-celery-beat's tables.

Beat (``DatabaseScheduler``) reads the schedule from the database, where admins edit it
under *Periodic tasks*. The defaults below are written after ``migrate`` only when a task
of that name does not exist yet, so an admin's change survives restarts and upgrades
(``CELERY_BEAT_SCHEDULE`` would be re-applied over it every time beat starts).
"""
from __future__ import annotations

from celery.schedules import crontab

BEAT_SCHEDULE = {
    "recommender-embed-sweep": {
        "task": "recommender.embed_items",
        "schedule": 600.0,
        "options": {"expires": 600},
    },
    "recommender-nightly-retrain": {
        "task": "recommender.scheduled_retrain",
        "schedule": crontab(hour=3, minute=15),
        "options": {"expires": 3600},
    },
    # Events whose shopper or item was deleted while they were written (no foreign key checks).
    "recommender-sweep-orphan-events": {
        "task": "recommender.sweep_orphan_events",
        "schedule": 3600.0,
        "options": {"expires": 3600},
    },
    # Report count tables: today's partial day and any day touched by late events, every 15 minutes.
    "recommender-aggregate-reports": {
        "task": "recommender.aggregate_reports",
        "schedule": 900.0,
        "options": {"expires": 900},
    },
}


def do_install_default_schedule(**kwargs) -> list[str]:
    """Create the periodic tasks that are missing; never touch existing ones. Returns the names created."""
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import ModelEntry

    created = []
    for name, entry in BEAT_SCHEDULE.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        model_schedule, field = ModelEntry.to_model_schedule(entry["schedule"])
        PeriodicTask.objects.create(
            name=name,
            task=entry["task"],
            expire_seconds=entry.get("options", {}).get("expires"),
            **{field: model_schedule},
        )
        created.append(name)
    return created
