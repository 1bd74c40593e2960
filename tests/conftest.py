"""Fixtures shared by every test layer."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("SHOP_RECS_SHARED_DIR", REPO_ROOT.parent / "shared"))
ONLINE_RETAIL = SHARED_DIR / "datasets" / "online-retail-uci" / "online_retail.parquet"


def unavailable(message: str) -> None:
    """A test's real dependency is missing: fail under CI=true (CI must have it), skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(message + " CI must have it.")
    pytest.skip(message)


def require_shared(path: Path) -> Path:
    """Return ``path`` if the shared material is there (see :func:`unavailable`)."""
    if not path.exists():
        unavailable(f"{path} is missing (the shared datasets folder next to the repository).")
    return path


def require_postgres() -> None:
    """Behaviour that depends on PostgreSQL (locks, concurrency) is tested on it (see :func:`unavailable`)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        unavailable("needs PostgreSQL: set DATABASE_URL=postgres://...")


@pytest.fixture
def online_retail_path() -> Path:
    return require_shared(ONLINE_RETAIL)


@pytest.fixture
def connection_vendor() -> str:
    from django.db import connection

    return connection.vendor
