"""All periodic jobs in one place. django-celery-beat copies them into the database on start,
where admins can change their schedules (Periodic tasks in the admin)."""
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
    # Report count tables: today's partial day and any day touched by late events, every 15 minutes.
    "recommender-aggregate-reports": {
        "task": "recommender.aggregate_reports",
        "schedule": 900.0,
        "options": {"expires": 900},
    },
}
