"""The host project: health check, API key command, OpenAPI schema, production settings."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.django_db


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "shop_recs.test_settings", **env}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=full_env, capture_output=True, text=True, timeout=120
    )


def test_healthz_reports_database_broker_and_model(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["database"]["ok"] is True
    assert set(body["broker"]) >= {"ok", "transport"}
    assert body["model"] is None
    assert body["status"] in {"ok", "degraded"}


def healthz_in_a_process(database_url: str) -> tuple[str, str]:
    """(status code, body) of ``GET /healthz`` in a fresh process on ``database_url``."""
    code = (
        "import django, json; django.setup();"
        "from django.test import Client; r = Client().get('/healthz');"
        "print(r.status_code); print(r.content.decode())"
    )
    proc = run_python(code, DATABASE_URL=database_url)
    assert proc.returncode == 0, proc.stderr
    status, body = proc.stdout.strip().splitlines()[-2:]
    return status, body


def test_healthz_is_503_when_the_database_is_unreachable():
    status, body = healthz_in_a_process("postgres://postgres@127.0.0.1:1/nowhere")
    assert status == "503"
    assert '"ok": false' in body and '"status": "unavailable"' in body


def test_healthz_is_503_with_what_to_run_when_the_database_has_no_tables(tmp_path):
    """A reachable database that was never migrated: unavailable and why, never a 500."""
    status, body = healthz_in_a_process(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert status == "503"
    health = json.loads(body)
    assert health["status"] == "unavailable" and health["database"]["ok"] is False
    assert "run `python manage.py migrate`" in health["database"]["error"]


def test_create_api_key_prints_a_working_key_on_its_last_line():
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "--name", "storefront", "--scopes", "ingest,reports", stdout=out, stderr=err)
    key = out.getvalue().strip().splitlines()[-1]
    assert key.startswith("rk_")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    r = client.post("/api/v1/items", data=b'[{"item_id": "a", "title": "A"}]', content_type="application/json")
    assert r.status_code == 200
    assert "storefront" in err.getvalue()


def test_create_api_key_rejects_unknown_scopes():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="choose from ingest, recommend, reports"):
        call_command("create_api_key", "--name", "x", "--scopes", "ingest,admin")


def test_openapi_schema_documents_the_ingestion_endpoints(client):
    r = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert r.status_code == 200
    schema = r.json()
    for path in ("/api/v1/items", "/api/v1/events", "/api/v1/items/{item_id}", "/api/v1/users/{user_id}"):
        assert path in schema["paths"], path
    assert client.get("/api/docs/").status_code == 200


def test_production_settings_pass_check_deploy():
    proc = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
            "DJANGO_SETTINGS_MODULE": "shop_recs.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "a-long-random-production-secret-" + "x" * 40,
            "DJANGO_SECURE_SSL_REDIRECT": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_production_settings_refuse_to_start_without_a_secret():
    proc = run_python(
        "import django; django.setup()",
        DJANGO_SETTINGS_MODULE="shop_recs.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="",
    )
    assert proc.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in proc.stderr


def test_unknown_recommender_setting_fails_loudly(settings):
    from django.core.exceptions import ImproperlyConfigured

    from recommender.conf import settings as rec_settings

    settings.RECOMMENDER = {"EVENT_WEIGHT": {"view": 1}}
    with pytest.raises(ImproperlyConfigured, match="Unknown RECOMMENDER setting.*EVENT_WEIGHT"):
        rec_settings.validate()
