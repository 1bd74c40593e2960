"""Helpers shared by the benchmarks: a fresh PostgreSQL database, a gunicorn server, tables."""
from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse, urlunparse

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def bench_env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "shop_recs.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "bench-only-secret-" + "x" * 40),
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_LOG_LEVEL": "WARNING",
    }


def fresh_database(url: str) -> str:
    """Drop and create the database named in ``url``, migrate it, and return the url."""
    import psycopg

    parts = urlparse(url)
    name = parts.path.lstrip("/")
    admin = urlunparse(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    manage("migrate", "--noinput", database_url=url)
    return url


def manage(*args: str, database_url: str, capture: bool = True) -> str:
    proc = subprocess.run(
        [PY, "manage.py", *args], cwd=REPO, env=bench_env(database_url), capture_output=capture, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gunicorn(database_url: str, workers: int = 2, threads: int = 1):
    """A real gunicorn server on loopback; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [PY, "-m", "gunicorn", "shop_recs.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--threads", str(threads), "--timeout", "120", "--log-level", "warning"],
        cwd=REPO, env=bench_env(database_url),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        import requests

        for _ in range(200):
            try:
                if requests.get(f"{base}/healthz", timeout=10).status_code in (200, 503):
                    break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        else:
            raise SystemExit("gunicorn did not start")
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def median(xs) -> float:
    return statistics.median(xs) if xs else float("nan")


def print_table(title: str, headers: list[str], rows: list[list]) -> None:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3g}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n### {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for r in cells:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |")


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, default=str))
        print(f"\nwrote {path}")


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"


def _python_loop(n: int = 1_000_000) -> float:
    started = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return time.perf_counter() - started


def _pipe_round_trips(n: int = 2_000) -> list[float]:
    """Round trips of one byte between this process and a child over two pipes (each a wakeup
    of a sleeping process: what every request costs between the client, gunicorn's threads
    and PostgreSQL)."""
    from_parent, to_child = os.pipe()  # (read end, write end)
    from_child, to_parent = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child echoes until the pipe closes
        os.close(to_child)
        os.close(from_child)
        while os.read(from_parent, 1):
            os.write(to_parent, b"x")
        os._exit(0)
    os.close(from_parent)
    os.close(to_parent)
    out = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            os.write(to_child, b"x")
            os.read(from_child, 1)
            out.append(time.perf_counter() - started)
    finally:
        os.close(to_child)
        os.close(from_child)
        os.waitpid(pid, 0)
    return out


def machine_speed() -> dict[str, float]:
    """How fast this box runs what a request is made of, so figures from different boxes compare.

    The same 2-core kind of machine has differed ~2x between sessions (another CPU, or a guest
    nested in another virtual machine, where every wakeup and page fault costs more):
    ``python_loop_ms`` is 1M additions in a Python loop (the interpreter), ``pipe_round_trip_us``
    one byte to another process and back (two wakeups), both medians of repeated runs.
    """
    loops = [_python_loop() for _ in range(7)]
    trips = _pipe_round_trips()
    return {
        "python_loop_ms": statistics.median(loops) * 1000,
        "pipe_round_trip_us": statistics.median(trips) * 1e6,
        "pipe_round_trip_p99_us": sorted(trips)[int(len(trips) * 0.99)] * 1e6,
    }
