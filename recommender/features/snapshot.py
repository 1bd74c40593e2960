"""Read the behaviour log and the catalog into the arrays ``recommender.ml`` works on."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.db import connection

from ..conf import settings as rec_settings
from ..ml.base import Interactions
from ..ml.processing import event_weight_table
from ..models import Item, ShopUser
from .embeddings import load_item_vectors


@dataclass
class CatalogArrays:
    """Per-item arrays, in item index order (the index space of the snapshot's Interactions)."""

    pks: np.ndarray  # (n_items,) int64 database ids
    external_ids: np.ndarray  # (n_items,) object
    titles: list[str]
    categories: list[str]
    prices: np.ndarray  # (n_items,) float64, NaN when unknown
    eligible: np.ndarray  # (n_items,) bool: live, active, in stock
    created_at: np.ndarray  # (n_items,) int64 unix seconds


@dataclass
class Snapshot:
    interactions: Interactions
    catalog: CatalogArrays
    user_pks: np.ndarray  # (n_users,) int64
    since: datetime | None
    until: datetime | None


def load_catalog() -> CatalogArrays:
    """Every live item (events or not, so brand-new items can be recommended from their text)."""
    rows = list(
        Item.objects.live()
        .order_by("pk")
        .values_list("pk", "external_id", "title", "category", "price", "is_active", "in_stock", "created_at")
    )
    return CatalogArrays(
        pks=np.array([r[0] for r in rows], dtype=np.int64),
        external_ids=np.array([r[1] for r in rows], dtype=object),
        titles=[r[2] for r in rows],
        categories=[r[3] for r in rows],
        prices=np.array([np.nan if r[4] is None else float(r[4]) for r in rows], dtype=np.float64),
        eligible=np.array([bool(r[5] and r[6]) for r in rows], dtype=bool),
        created_at=np.array([int(r[7].timestamp()) for r in rows], dtype=np.int64),
    )


def _read_events(since: datetime | None, until: datetime | None, chunk: int = 200_000):
    """Yield (user_pk, item_pk, type, unix_ts, value) arrays in chunks, by time."""
    where, params = [], []
    if since is not None:
        where.append("timestamp >= %s")
        params.append(since)
    if until is not None:
        where.append("timestamp < %s")
        params.append(until)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    epoch = "EXTRACT(EPOCH FROM timestamp)::bigint" if connection.vendor == "postgresql" else "CAST(strftime('%%s', timestamp) AS INTEGER)"
    sql = f"SELECT user_id, item_id, event_type, {epoch}, value FROM recommender_event {clause} ORDER BY timestamp, id"
    with connection.cursor() as cur:
        cur.execute(sql, params)
        while True:
            rows = cur.fetchmany(chunk)
            if not rows:
                return
            arr = np.array(rows, dtype=object)
            yield (
                arr[:, 0].astype(np.int64),
                arr[:, 1].astype(np.int64),
                arr[:, 2].astype(np.int8),
                arr[:, 3].astype(np.int64),
                np.array([np.nan if v is None else v for v in arr[:, 4]], dtype=np.float32),
            )


def load_snapshot(
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    with_text: bool = True,
) -> Snapshot:
    """Events in ``[since, until)`` plus the whole live catalog as index-mapped arrays.

    Items that were deleted from the catalog keep no index (their events are dropped);
    users are indexed in order of database id.
    """
    catalog = load_catalog()
    parts = list(_read_events(since, until))
    if parts:
        u, i, t, ts, v = (np.concatenate(cols) for cols in zip(*parts))
    else:
        u = i = ts = np.zeros(0, dtype=np.int64)
        t = np.zeros(0, dtype=np.int8)
        v = np.zeros(0, dtype=np.float32)
    item_pos = {pk: n for n, pk in enumerate(catalog.pks.tolist())}
    item_idx = np.fromiter((item_pos.get(pk, -1) for pk in i.tolist()), dtype=np.int64, count=len(i))
    keep = item_idx >= 0
    u, item_idx, t, ts, v = u[keep], item_idx[keep], t[keep], ts[keep], v[keep]
    user_pks, user_idx = np.unique(u, return_inverse=True)
    weight = event_weight_table(rec_settings.EVENT_WEIGHTS)[t.astype(np.int64)]
    user_ext = dict(ShopUser.objects.values_list("pk", "external_id"))
    interactions = Interactions(
        user=user_idx.astype(np.int32),
        item=item_idx.astype(np.int32),
        timestamp=ts,
        n_users=len(user_pks),
        n_items=len(catalog.pks),
        event_type=t,
        weight=weight,
        item_text=load_item_vectors(catalog.pks) if with_text else None,
        user_ids=np.array([user_ext.get(pk, str(pk)) for pk in user_pks.tolist()], dtype=object),
        item_ids=catalog.external_ids,
        extra={"value": v},
    )
    return Snapshot(interactions, catalog, user_pks.astype(np.int64), since, until)
