"""One core per gunicorn worker (``GUNICORN_PIN_WORKERS``), for gunicorn.conf.py's hooks.

A gthread worker hands each request between its threads (the acceptor and the handler) and
waits on PostgreSQL; each wakeup of a thread that last ran on the other core costs a
cross-core interrupt, dear in a virtual machine. With each worker on a core of its own,
``bench/serving.py``'s workers on a 2-core virtual machine (session 8, alternating pinned and
free blocks in one server run, 5 pairs each) served 275 against 256 req/s flat out (every
pair), half the voluntary context switches, and at 200 req/s a client p50 of 9.6 against
10.3 ms (every pair) and p99 of 29 against 47 ms (4 of 5 pairs).
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable


def usable_cores() -> list[int]:
    """The cores this process may run on, in order."""
    return sorted(os.sched_getaffinity(0))


def should_pin(setting: str | None, workers: int, cores: int) -> bool:
    """``GUNICORN_PIN_WORKERS``: "1" pins, "0" does not, unset or "auto" pins when each worker
    can have a core of its own (``workers <= cores``) and there is more than one core."""
    value = (setting or "auto").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    if value != "auto":
        raise ValueError(f"GUNICORN_PIN_WORKERS must be auto, 1 or 0; got {setting!r}.")
    return cores > 1 and workers <= cores


def pick_core(cores: list[int], taken: Iterable[int | None]) -> int:
    """The usable core the fewest live workers are pinned to (the lowest of equals), so that a
    worker restarted in place of another takes the core that one left."""
    used = Counter(c for c in taken if c is not None)
    return min(cores, key=lambda c: (used[c], c))
