"""`make demo`'s command on embedded defaults: SQLite, a file broker, a real worker, a server."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_prepares_the_pipeline_and_serves_api_and_admin(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "CELERY_TASK_DEFAULT_QUEUE"}}
    env.update(DJANGO_SETTINGS_MODULE="shop_recs.settings", DJANGO_DEBUG="1", SHOP_RECS_VAR_DIR=str(tmp_path / "var"),
               RECOMMENDER_ARTIFACT_DIR=str(tmp_path / "var" / "artifacts"), PYTHONUNBUFFERED="1")
    out = tmp_path / "demo.out"
    with out.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--port", str(port), "--items", "150", "--users", "90", "--weeks", "3"],
            cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 420
        while True:
            assert proc.poll() is None, out.read_text()[-4000:]
            try:
                health = requests.get(f"{base}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, out.read_text()[-4000:]
                time.sleep(1)
        text = out.read_text()
        # the demo says its data is synthetic and prints the login and a key
        assert "SYNTHETIC" in text and "admin / admin" in text
        key = re.search(r"API key:\s+(rk_\S+)", text).group(1)
        # every pipeline step ran: seed, embed, train
        assert "Embedded 150 item(s)" in text
        assert re.search(r"Run \d+: (succeeded|rejected)", text), text[-3000:]
        body = health.json()
        assert health.status_code == 200 and body["database"]["vendor"] == "sqlite"
        assert body["broker"] == {"ok": True, "transport": "filesystem"}
        # the API answers with the printed key, and the admin login page is served with its CSS
        item = requests.get(f"{base}/api/v1/items/demo-i00000", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert item.status_code == 200, item.text
        assert requests.get(f"{base}/admin/login/", timeout=10).status_code == 200
        # a week of SIMULATED shopper traffic ran under the demo A/B experiment, and is reported per arm
        assert "SIMULATED traffic" in text and "experiment: 'Fair exposure vs no boost' (created and started)" in text
        report = requests.get(f"{base}/api/v1/reports/exposure", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        arms = ("fair-exposure-vs-no-boost-control", "fair-exposure-vs-no-boost-treatment")
        assert all(report.json()["by_variant"][arm]["impressions"] > 0 for arm in arms), report.text
        assert requests.get(f"{base}/static/admin/css/base.css", timeout=10).status_code == 200
        # and a real Celery worker runs beside the server, on the file broker
        log = (tmp_path / "var" / "worker.log")
        deadline = time.monotonic() + 60
        while b"ready." not in log.read_bytes():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
