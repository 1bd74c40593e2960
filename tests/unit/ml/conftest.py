"""Fixtures for the pure-numpy ml tests (no database): a tiny synthetic two-cluster shop."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
for p in (REPO, HERE):  # runnable with -p no:django, which does not add the project dir
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from ml_testdata import make_synthetic  # noqa: E402


@pytest.fixture(scope="session")
def synthetic():
    """(Interactions, (n_items,) cluster) of :func:`ml_testdata.make_synthetic`; do not mutate."""
    return make_synthetic()
