"""One training at a time, across worker processes and machines, released if a worker dies."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

from ..conf import settings as rec_settings

TRAINING_LOCK_ID = 0x7265635F7472  # arbitrary 64-bit key: "rec_tr"


class LockBusy(Exception):
    """Another training holds the lock."""


@contextmanager
def training_lock():
    """PostgreSQL session advisory lock (dies with the worker's connection); a file lock elsewhere."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", [TRAINING_LOCK_ID])
            if not cur.fetchone()[0]:
                raise LockBusy("another training run holds the lock")
        try:
            yield
        finally:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", [TRAINING_LOCK_ID])
        return
    path = Path(rec_settings.ARTIFACT_DIR) / ".training.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy("another training run holds the lock") from None
        yield
    finally:
        os.close(fd)
