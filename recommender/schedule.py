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
}
