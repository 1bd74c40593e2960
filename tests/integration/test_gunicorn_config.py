"""The web processes' gunicorn settings (gunicorn.conf.py) as the image and docker-compose.yml run them."""
from __future__ import annotations

import http.client
import os
import signal
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


def _start(workers: int = 1, **extra_env: str):
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop_recs.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "tests-only-" + "x" * 40,
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(workers),
        **extra_env,
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
        return port, proc
    except BaseException:
        proc.terminate()
        raise


@pytest.fixture
def start():
    started = []

    def run(workers: int = 1, **extra_env: str):
        started.append(_start(workers, **extra_env))
        return started[-1]

    yield run
    for _, proc in started:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def server(start):
    return start()


def _workers(proc, count: int, timeout: float = 60.0) -> list[int]:
    """The arbiter's worker pids once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        pids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if len(pids) == count or time.monotonic() > deadline:
            return sorted(int(p) for p in pids)
        time.sleep(0.2)


def _cores(pid: int) -> set[int]:
    return os.sched_getaffinity(pid)


def test_each_worker_runs_on_a_core_of_its_own_and_a_replacement_takes_the_one_left(start):
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.fail("needs a machine with 2 cores or more (CI has 2)")
    _, proc = start(workers=2)
    first = _workers(proc, 2)
    assert sorted(next(iter(_cores(p))) for p in first) == cores[:2]
    assert all(len(_cores(p)) == 1 for p in first)
    assert _cores(proc.pid) == set(cores)  # the arbiter itself stays free
    # a worker that dies is replaced on the core it left
    lost = next(iter(_cores(first[0])))
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = _workers(proc, 2)
        if len(now) == 2 and first[0] not in now:
            break
        time.sleep(0.2)
    (replacement,) = set(now) - set(first)
    assert _cores(replacement) == {lost}


def test_pinning_can_be_turned_off(start):
    _, proc = start(workers=2, GUNICORN_PIN_WORKERS="0")
    for pid in _workers(proc, 2):
        assert _cores(pid) == os.sched_getaffinity(0)


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
    assert len(_workers(proc, 1)) == 1


def test_a_pinning_setting_it_does_not_understand_stops_the_start_with_what_to_write():
    env = {**os.environ, "GUNICORN_PIN_WORKERS": "sometimes", "GUNICORN_BIND": f"127.0.0.1:{_free_port()}"}
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "shop_recs.wsgi", "-c", "gunicorn.conf.py", "--check-config"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "GUNICORN_PIN_WORKERS must be auto, 1 or 0; got 'sometimes'" in done.stdout + done.stderr
