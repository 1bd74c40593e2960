"""``GET /healthz``: the database, the broker and the active model, for load balancers and humans."""
from __future__ import annotations

import time

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET


def _check_database() -> dict:
    started = time.perf_counter()
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    except Exception as exc:  # any driver error means "unreachable" to a health check
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}".strip()[:300]}
    return {"ok": True, "vendor": connection.vendor, "ms": round((time.perf_counter() - started) * 1000, 2)}


def _check_broker() -> dict:
    from kombu import Connection

    url = settings.CELERY_BROKER_URL
    transport = url.split("://", 1)[0]
    try:
        with Connection(url, connect_timeout=1, transport_options=getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})) as conn:
            conn.ensure_connection(max_retries=1, timeout=1)
    except Exception as exc:
        return {"ok": False, "transport": transport, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "transport": transport}


def _active_model() -> dict | None:
    from ..models import ModelVersion

    mv = ModelVersion.objects.filter(is_active=True).only("name", "kind", "activated_at").first()
    if mv is None:
        return None
    return {"name": mv.name, "kind": mv.kind, "activated_at": mv.activated_at}


def _check_schema(database: dict) -> dict | None:
    """The active model, or None; reachable but without the app's tables (never migrated, or
    an older schema) marks ``database`` not ok, saying what to run, instead of a 500."""
    try:
        return _active_model()
    except DatabaseError as exc:
        database.update(ok=False, error=(
            f"the database answers but its tables are missing or out of date "
            f"({type(exc).__name__}: {exc}".strip()[:240] + "); run `python manage.py migrate`"))
        return None


@require_GET
def healthz(request):
    database = _check_database()
    body: dict = {"database": database}
    body["broker"] = _check_broker()
    body["model"] = _check_schema(database) if database["ok"] else None
    if not database["ok"]:
        body["status"] = "unavailable"
        return JsonResponse(body, status=503)
    body["status"] = "ok" if body["broker"]["ok"] else "degraded"
    return JsonResponse(body, status=200)
