"""gunicorn config for ``bench/serving.py --worker-trace PATH``: what each worker did, and when.

Every worker appends lines ``pid  what  start_s  end_s`` (time.monotonic(), the clock the
load generator's ``--trace`` uses, so the two line up) to ``$BENCH_WORKER_TRACE`` for:

* ``gc0``/``gc1``/``gc2``: each garbage collection of that generation;
* ``refresh``: the serving-refresh job (catalog / impression counts / version swap);
* ``flush``: one write of queued impressions.

Only the benchmark loads this file; the service itself carries no tracing. It starts from the
project's gunicorn.conf.py (its settings and hooks), so traced runs serve as untraced ones do.
"""
from __future__ import annotations

import functools
import gc
import os
import runpy
import time
from pathlib import Path

_project = runpy.run_path(str(Path(__file__).resolve().parents[1] / "gunicorn.conf.py"))
globals().update({k: v for k, v in _project.items() if not k.startswith("_") and k != "post_fork"})

_started: dict[str, float] = {}
_file = None  # this worker's trace file, opened once after the fork


def write(what: str, start: float, end: float) -> None:
    global _file
    if _file is None:
        # Line-buffered: one write() per event, appended atomically next to the other workers'.
        _file = open(os.environ["BENCH_WORKER_TRACE"], "a", buffering=1)
    _file.write(f"{os.getpid()}\t{what}\t{start:.6f}\t{end:.6f}\n")


def _timed(what: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            write(what, start, time.monotonic())

    return wrapper


def post_fork(server, worker):
    _project["post_fork"](server, worker)

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            _started["gc"] = time.monotonic()
        else:
            write(f"gc{info['generation']}", _started.get("gc", time.monotonic()), time.monotonic())

    gc.callbacks.append(on_gc)


def post_worker_init(worker):  # noqa: ARG001 - the application is imported by now
    from recommender.serving import impressions
    from recommender.serving.state import ServingState

    ServingState._refresh_catalogs = _timed("refresh", ServingState._refresh_catalogs)
    ServingState._swap = _timed("swap", ServingState._swap)
    impressions.flush = _timed("flush", impressions.flush)
