"""Settings for the test suite: production-like (DEBUG off), but plain HTTP and fast hashing."""
import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "0")
# Tests about background work use a real worker and the local Redis; each test session gets
# its own queue so that messages left by another run are never consumed.
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CELERY_TASK_DEFAULT_QUEUE", f"tests-{os.getpid()}")

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
# The suite loads the serving state hundreds of times in one process: freezing the collector's
# view at each load would keep every test's leftovers. tests/integration/test_serving_gc.py
# turns it on for the behaviour itself.
RECOMMENDER = {**RECOMMENDER, "SERVING_GC_FREEZE": False}  # noqa: F405
