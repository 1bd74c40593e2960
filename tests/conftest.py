"""Fixtures shared by every test layer."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("SHOP_RECS_SHARED_DIR", REPO_ROOT.parent / "shared"))
ONLINE_RETAIL = SHARED_DIR / "datasets" / "online-retail-uci" / "online_retail.parquet"


def require_shared(path: Path) -> Path:
    """Return ``path`` if the shared material is there; fail under CI=true, skip elsewhere."""
    if path.exists():
        return path
    message = f"{path} is missing (the shared datasets folder next to the repository)."
    if os.environ.get("CI") == "true":
        pytest.fail(message + " CI must have it.")
    pytest.skip(message)


@pytest.fixture
def online_retail_path() -> Path:
    return require_shared(ONLINE_RETAIL)


@pytest.fixture
def connection_vendor() -> str:
    from django.db import connection

    return connection.vendor
