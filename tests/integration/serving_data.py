"""Test data for the serving tests: a small shop through the real ingestion services, and artifacts.

The artifact is written by hand (vectors with a known geometry) instead of trained, so the
tests are fast and their expectations exact: item ``sku-i`` lies along the axis of its
category ``c{i % 4}``, and user ``u{j}`` likes category ``c{j % 4}``.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from recommender.ingestion import do_ingest_events, do_upsert_items
from recommender.models import Item, ModelVersion, ShopUser
from recommender.serving import impressions, state
from recommender.training.pipeline import do_activate

N_ITEMS = 40
N_USERS = 12
DIM = 8
NOW = datetime.now(timezone.utc).replace(microsecond=0)


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def serving_settings(settings, tmp_path):
    """Impressions stay queued until a test flushes them (no thread writing outside the test's transaction)."""
    settings.RECOMMENDER = {
        **settings.RECOMMENDER,
        "ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "IMPRESSION_FLUSH_SECONDS": 0,
        "SERVING_CANDIDATES": 50,
        "SERVING_REFRESH_IN_BACKGROUND": False,
        "SERVING_BLAS_THREADS": None,  # leave the test process's other BLAS users alone
    }
    state.reset_state()
    impressions.reset()
    yield settings
    state.reset_state()
    impressions.reset()


@pytest.fixture
def model(serving_settings, clock, tmp_path) -> ModelVersion:
    """The small shop with an active hand-made version ``v1`` (modules may define their own)."""
    make_shop()
    return write_version(tmp_path / "artifacts", "v1")


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(state, "clock", fake)
    return fake


def item_record(i: int) -> dict:
    return {
        "item_id": f"sku-{i}",
        "title": f"Item {i} of category {i % 4}",
        "category": f"c{i % 4}",
        "brand": "Acme",
        "price": 5.0 + i,
        "in_stock": i != 39,
    }


def make_shop() -> None:
    """40 items; 12 users; items 0-7 popular (head), the rest rarely touched (tail)."""
    do_upsert_items([item_record(i) for i in range(N_ITEMS)])
    events = []
    n = 0
    for j in range(N_USERS):
        for i in range(8):  # everybody views the popular items
            events.append(_ev(n, f"u{j}", i, "view"))
            n += 1
        # and a few items of the category they like
        for i in range(j % 4, N_ITEMS, 4)[:3]:
            events.append(_ev(n, f"u{j}", i, "view"))
            n += 1
        events.append(_ev(n, f"u{j}", 8 + j % 4, "purchase"))
        n += 1
    do_ingest_events(events)
    ShopUser.objects.get_or_create(external_id="newbie")  # known, no history


def _ev(n: int, user: str, item: int, kind: str) -> dict:
    return {
        "user_id": user, "item_id": f"sku-{item}", "event_type": kind,
        "timestamp": (NOW - timedelta(hours=n % 48 + 1)).isoformat(), "event_id": f"t-{n}",
    }


def write_version(root: Path, name: str, *, seed: int = 0, activate: bool = True, flip: bool = False) -> ModelVersion:
    """Write an artifact folder and its ModelVersion row (like training.pipeline does)."""
    rng = np.random.default_rng(seed)
    pks = np.array(Item.objects.order_by("pk").values_list("pk", flat=True), dtype=np.int64)
    cats = np.array([int(e.split("-")[1]) % 4 for e in Item.objects.order_by("pk").values_list("external_id", flat=True)])
    items = np.zeros((len(pks), DIM), dtype=np.float32)
    items[np.arange(len(pks)), (3 - cats) if flip else cats] = 1.0
    items += rng.normal(0, 0.05, items.shape).astype(np.float32)
    users = list(ShopUser.objects.exclude(external_id="newbie").order_by("pk").values_list("pk", "external_id"))
    user_pks = np.array([u[0] for u in users], dtype=np.int64)
    user_vecs = np.zeros((len(users), DIM), dtype=np.float32)
    for row, (_, ext) in enumerate(users):
        if ext.startswith("u"):
            user_vecs[row, int(ext[1:]) % 4] = 1.0
    path = root / name
    path.mkdir(parents=True)
    for stem, arr in (("item_vectors", items), ("user_vectors", user_vecs), ("item_pks", pks), ("user_pks", user_pks)):
        np.save(path / f"{stem}.npy", arr, allow_pickle=False)
    (path / "meta.json").write_text(json.dumps({"name": name}))
    version = ModelVersion.objects.create(
        name=name, kind="hand-made", status=ModelVersion.Status.READY, artifact_path=str(path)
    )
    if activate:
        do_activate(version)
    return version
