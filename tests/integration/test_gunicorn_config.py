"""The web processes' gunicorn settings (gunicorn.conf.py) as the image and docker-compose.yml run them."""
from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop_recs.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "tests-only-" + "x" * 40,
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "shop_recs.wsgi", "-c", "gunicorn.conf.py"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_production_settings_keep_connections_alive_with_one_thread_per_worker(server):
    port, proc = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    statuses = []
    for _ in range(3):
        conn.request("GET", "/healthz", headers={"Host": "localhost"})
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
        # gthread answers HTTP/1.1 with the connection left open (the sync worker closes it)
        assert response.getheader("Connection", "").lower() != "close"
        assert not response.will_close
    assert all(s in (200, 503) for s in statuses), statuses  # 503: a dependency is down, still an answer
    sock_before = conn.sock
    conn.request("GET", "/healthz", headers={"Host": "localhost"})
    conn.getresponse().read()
    assert conn.sock is sock_before  # the same TCP connection served every request
    conn.close()
    # one worker (WEB_CONCURRENCY=1) besides the arbiter
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 1
