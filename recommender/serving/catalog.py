"""Per-item arrays of the catalog in a model version's index order, read in a few bulk queries.

Built when a version is loaded and rebuilt every ``SERVING_CATALOG_REFRESH_SECONDS``; today's
impression counts are refreshed in place more often. Requests only read these arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone

import numpy as np
from django.db import connection
from django.utils import timezone

from ..conf import settings as rec_settings
from ..models import EventType, Item
from ..ranking.policy import CatalogArrays
from ..ranking.segments import head_mask

UNKNOWN_CATEGORY = -2  # a filter on a category nobody has matches no item


@dataclass(eq=False)
class Catalog:
    """Catalog arrays of one index space (see :class:`recommender.ranking.policy.CatalogArrays`)."""

    pks: np.ndarray  # (n,) int64
    external_ids: np.ndarray  # (n,) object str
    titles: np.ndarray  # (n,) object str
    category: np.ndarray  # (n,) int64 code, -1 none
    category_codes: dict[str, int]
    price: np.ndarray  # (n,) float64, NaN unknown
    in_stock: np.ndarray  # (n,) bool
    is_active: np.ndarray  # (n,) bool: live, active, not a placeholder
    is_live: np.ndarray  # (n,) bool: not deleted from the catalog
    created_ts: np.ndarray  # (n,) float64 unix seconds
    by_external_id: dict[str, int]
    counts: dict[int, np.ndarray]  # window days -> (n,) interactions in the window
    impressions_today: np.ndarray  # (n,) int64, refreshed in place
    ever_shown: np.ndarray  # (n,) bool, refreshed in place
    built_at: float = 0.0
    impressions_at: float = 0.0
    _derived: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.pks)

    def arrays(self, head_share: float, window_days: int, vectors: np.ndarray | None) -> CatalogArrays:
        """The policy's CatalogArrays for a head definition (cached; impressions shared, not copied)."""
        key = ("arrays", head_share, window_days, vectors is not None)
        out = self._derived.get(key)
        if out is None:
            out = CatalogArrays(
                is_head=self.head(head_share, window_days), category=self.category, price=self.price,
                in_stock=self.in_stock, impressions_today=self.impressions_today, ever_shown=self.ever_shown,
                vectors=vectors, is_active=self.is_active,
            )
            self._derived[key] = out
        return out

    def head(self, head_share: float, window_days: int) -> np.ndarray:
        key = ("head", head_share, window_days)
        out = self._derived.get(key)
        if out is None:
            out = head_mask(self.window_counts(window_days), head_share)
            self._derived[key] = out
        return out

    def window_counts(self, window_days: int) -> np.ndarray:
        counts = self.counts.get(window_days)
        if counts is None:  # a policy edit brought a new window: read it once
            counts = self.counts[window_days] = interaction_counts(self.pks, window_days)
        return counts

    def popular(self, window_days: int, n: int, head: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indices, log counts) of the ``n`` most interacted active items; tail only when ``head`` is given."""
        key = ("popular", window_days, n, None if head is None else id(head))
        out = self._derived.get(key)
        if out is None:
            counts = self.window_counts(window_days)
            ok = self.is_active & (True if head is None else ~head)
            idx = np.flatnonzero(ok)
            idx = idx[np.argsort(-counts[idx], kind="stable")][:n]
            out = (idx, np.log1p(counts[idx]))
            self._derived[key] = out
        return out


def _category_codes(categories: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    names, inverse = np.unique(categories.astype(str), return_inverse=True)
    codes = {str(c): n for n, c in enumerate(names) if c}
    table = np.array([codes.get(str(c), -1) for c in names], dtype=np.int64)
    return table[inverse].astype(np.int64) if len(categories) else np.zeros(0, np.int64), codes


def _positions(space_pks: np.ndarray, pks: np.ndarray) -> np.ndarray:
    """Index of each of ``pks`` in ``space_pks``; -1 where absent."""
    order = np.argsort(space_pks, kind="stable")
    sorted_pks = space_pks[order]
    if not len(sorted_pks):
        return np.full(len(pks), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_pks, pks)
    pos[pos == len(sorted_pks)] = 0
    return np.where(sorted_pks[pos] == pks, order[pos], -1)


def interaction_counts(space_pks: np.ndarray, window_days: int, now: datetime | None = None) -> np.ndarray:
    """(n,) interactions (impressions excluded) per item of the space over the last ``window_days``."""
    since = (now or timezone.now()) - timedelta(days=window_days)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT item_id, COUNT(*) FROM recommender_event WHERE timestamp >= %s AND event_type <> %s GROUP BY item_id",
            [since, int(EventType.IMPRESSION)],
        )
        rows = cur.fetchall()
    return _scatter(space_pks, rows, np.float64)


def _scatter(space_pks: np.ndarray, rows: list[tuple[int, int]], dtype) -> np.ndarray:
    out = np.zeros(len(space_pks), dtype=dtype)
    if rows:
        arr = np.asarray(rows, dtype=np.int64)
        at = _positions(space_pks, arr[:, 0])
        hit = at >= 0
        out[at[hit]] = arr[hit, 1]
    return out


def impression_arrays(space_pks: np.ndarray, now: datetime | None = None) -> tuple[np.ndarray, np.ndarray]:
    """((n,) impressions since midnight UTC, (n,) shown within the lookback) in two grouped queries."""
    now = now or timezone.now()
    midnight = now.astimezone(dt_timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    since = now - timedelta(days=rec_settings.SERVING_SHOWN_LOOKBACK_DAYS)
    sql = "SELECT item_id, COUNT(*) FROM recommender_event WHERE event_type = %s AND timestamp >= %s GROUP BY item_id"
    with connection.cursor() as cur:
        cur.execute(sql, [int(EventType.IMPRESSION), midnight])
        today = _scatter(space_pks, cur.fetchall(), np.int64)
        cur.execute(sql, [int(EventType.IMPRESSION), since])
        shown = _scatter(space_pks, cur.fetchall(), np.int64) > 0
    return today, shown


def load_catalog(space_pks: np.ndarray, windows: set[int], now: datetime | None = None) -> Catalog:
    """Every per-item array the serving path needs, for the items of one index space."""
    space_pks = np.asarray(space_pks, dtype=np.int64)
    n = len(space_pks)
    ext = np.full(n, "", dtype=object)
    titles = np.full(n, "", dtype=object)
    cats = np.full(n, "", dtype=object)
    price = np.full(n, np.nan)
    in_stock = np.zeros(n, dtype=bool)
    active = np.zeros(n, dtype=bool)
    live = np.zeros(n, dtype=bool)
    created = np.zeros(n, dtype=np.float64)
    # Raw SQL with the casts done by the database: no Decimal or datetime objects per row
    # (this runs every SERVING_CATALOG_REFRESH_SECONDS over the whole catalog).
    epoch = (
        "EXTRACT(EPOCH FROM created_at)::float8" if connection.vendor == "postgresql"
        else "CAST(strftime('%%s', created_at) AS REAL)"
    )
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT id, external_id, title, category, CAST(price AS DOUBLE PRECISION), "
            f"is_active AND NOT is_placeholder AND deleted_at IS NULL, in_stock, {epoch}, deleted_at IS NULL "
            f"FROM {Item._meta.db_table}"
        )
        rows = cur.fetchall()
    if rows:
        ids, e, t, c, p, a, st, cr, lv = zip(*rows)
        at = _positions(space_pks, np.array(ids, dtype=np.int64))
        hit = at >= 0
        j = at[hit]
        for dst, src in ((ext, e), (titles, t), (cats, c)):
            dst[j] = np.array(src, dtype=object)[hit]
        price[j] = np.array(p, dtype=np.float64)[hit]  # None -> nan
        active[j] = np.array(a, dtype=bool)[hit]
        in_stock[j] = np.array(st, dtype=bool)[hit]
        created[j] = np.array(cr, dtype=np.float64)[hit]
        live[j] = np.array(lv, dtype=bool)[hit]
    category, codes = _category_codes(cats)
    today, shown = impression_arrays(space_pks, now)
    return Catalog(
        pks=space_pks, external_ids=ext, titles=titles, category=category, category_codes=codes,
        price=price, in_stock=in_stock, is_active=active, is_live=live, created_ts=created,
        by_external_id={e: j for j, e in enumerate(ext.tolist()) if e},
        counts={w: interaction_counts(space_pks, w, now) for w in windows},
        impressions_today=today, ever_shown=shown,
    )


def category_code(catalog: Catalog, name: str | None) -> int | None:
    """The code of a category filter; UNKNOWN_CATEGORY when no item has it."""
    if name is None:
        return None
    return catalog.category_codes.get(name, UNKNOWN_CATEGORY)


def is_new(catalog: Catalog, idx: np.ndarray, now: datetime) -> np.ndarray:
    """(m,) bool created within ``SERVING_NEW_ITEM_DAYS`` of ``now``."""
    cutoff = now.timestamp() - rec_settings.SERVING_NEW_ITEM_DAYS * 86_400.0
    return catalog.created_ts[idx] >= cutoff if not math.isnan(cutoff) else np.zeros(len(idx), bool)
