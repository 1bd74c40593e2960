"""gunicorn config for ``bench/serving.py --worker-trace PATH``: what each worker did, and when.

Every worker appends lines ``pid  what  start_s  end_s`` (time.monotonic(), the clock the
load generator's ``--trace`` uses, so the two line up) to ``$BENCH_WORKER_TRACE`` for:

* ``gc0``/``gc1``/``gc2``: each garbage collection of that generation;
* ``refresh``: the serving-refresh job (catalog / impression counts / version swap);
* ``flush``: one write of queued impressions.

Only the benchmark loads this file; the service itself carries no tracing.
"""
from __future__ import annotations

import functools
import gc
import os
import time

_started: dict[str, float] = {}


def _writer():
    path = os.environ["BENCH_WORKER_TRACE"]
    fh = open(path, "a", buffering=1)  # line-buffered: one write() per event, appended atomically
    pid = os.getpid()

    def write(what: str, start: float, end: float) -> None:
        fh.write(f"{pid}\t{what}\t{start:.6f}\t{end:.6f}\n")

    return write


def _timed(write, what: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            write(what, start, time.monotonic())

    return wrapper


def post_fork(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    write = _writer()

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            _started["gc"] = time.monotonic()
        else:
            write(f"gc{info['generation']}", _started.get("gc", time.monotonic()), time.monotonic())

    gc.callbacks.append(on_gc)


def post_worker_init(worker):  # noqa: ARG001 - the application is imported by now
    write = _writer()
    from recommender.serving import impressions
    from recommender.serving.state import ServingState

    ServingState._refresh_catalogs = _timed(write, "refresh", ServingState._refresh_catalogs)
    ServingState._swap = _timed(write, "swap", ServingState._swap)
    impressions.flush = _timed(write, "flush", impressions.flush)
