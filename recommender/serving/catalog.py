"""Per-item arrays of the catalog in a model version's index order, read in a few bulk queries.

Built when a version is loaded; every ``SERVING_CATALOG_REFRESH_SECONDS`` only the items changed
since the last read (``Item.updated_at``) are read again and applied to a copy (:func:`refresh_catalog`),
and the interaction window counts at most every ``COUNTS_REFRESH_SECONDS``. Today's impression counts
are kept by an :class:`ImpressionTracker` that adds only the impressions ingested since its last
read, in place. Requests only read these arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone

import numpy as np
from django.db import connection
from django.utils import timezone

from ..conf import settings as rec_settings
from ..models import EventType, Item, ReportDay
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
    # What the incremental refresh needs: the impressions kept up to date in place, the wall
    # time the item rows were read at, the ids of every item row then (to notice hard deletes),
    # when the window counts were read (clock()), and the newest text embedding id seen.
    tracker: "ImpressionTracker | None" = None
    items_read_at: datetime | None = None
    table_ids: np.ndarray | None = None
    counts_at: float = 0.0
    embeddings_mark: tuple | None = None
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

    def tail(self, head_share: float, window_days: int) -> np.ndarray:
        """``~head(...)``, kept like it (the index's tail back-up asks for it on every request)."""
        key = ("tail", head_share, window_days)
        out = self._derived.get(key)
        if out is None:
            out = self._derived[key] = ~self.head(head_share, window_days)
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
        return _scatter(space_pks, cur, np.float64)


def _scatter(space_pks: np.ndarray, rows, dtype) -> np.ndarray:
    """(n,) ``value`` at each ``(item_id, value)`` row's item; a cursor is read in chunks.

    Chunks, because this runs in the serving process's refresh thread: fetching and converting
    a hundred thousand rows in one call would hold the GIL that long against the requests.
    """
    out = np.zeros(len(space_pks), dtype=dtype)
    chunks = iter(lambda: rows.fetchmany(_CHUNK), []) if hasattr(rows, "fetchmany") else [rows]
    for chunk in chunks:
        if chunk:
            arr = np.asarray(chunk, dtype=np.int64)
            at = _positions(space_pks, arr[:, 0])
            hit = at >= 0
            out[at[hit]] = arr[hit, 1]
    return out


_CHUNK = 10_000


def impression_arrays(space_pks: np.ndarray, now: datetime | None = None) -> tuple[np.ndarray, np.ndarray]:
    """((n,) impressions since midnight UTC, (n,) shown within the lookback) in two grouped queries.

    The full recount: serving runs it once per day (and per space load); :class:`ImpressionTracker`
    keeps the counts current in between.
    """
    now = now or timezone.now()
    since = now - timedelta(days=rec_settings.SERVING_SHOWN_LOOKBACK_DAYS)
    sql = "SELECT item_id, COUNT(*) FROM recommender_event WHERE event_type = %s AND timestamp >= %s GROUP BY item_id"
    with connection.cursor() as cur:
        cur.execute(sql, [int(EventType.IMPRESSION), _midnight(now)])
        today = _scatter(space_pks, cur, np.int64)
    return today, shown_within(space_pks, since, now)


def shown_within(space_pks: np.ndarray, since: datetime, now: datetime) -> np.ndarray:
    """(n,) bool: the item had an impression between ``since`` and ``now``.

    The UTC days before today that the report job has filled are read from its count table
    (a row per item and day) instead of the impression events: 90 days of a busy shop's
    impressions are billions of rows, which every serving process would otherwise group once a
    day and at every version load. Today and the days not filled (the job lags, was re-opened
    by late events, or never runs) are read from the events, from ``since`` on; a filled day
    counts whole.
    """
    first, today = since.astimezone(dt_timezone.utc).date(), now.astimezone(dt_timezone.utc).date()
    filled = set(
        ReportDay.objects.filter(day__gte=first, day__lt=today, status=ReportDay.Status.FILLED)
        .values_list("day", flat=True)
    )
    shown = np.zeros(len(space_pks), dtype=bool)
    # The other days as ranges of consecutive days: [start, end) in time.
    ranges: list[list[datetime]] = []
    day = first
    while day <= today:
        if day not in filled:
            start = max(since, datetime(day.year, day.month, day.day, tzinfo=dt_timezone.utc))
            end = datetime(day.year, day.month, day.day, tzinfo=dt_timezone.utc) + timedelta(days=1)
            if ranges and ranges[-1][1] == start:
                ranges[-1][1] = end
            else:
                ranges.append([start, end])
        day += timedelta(days=1)
    with connection.cursor() as cur:
        if filled:
            days = sorted(filled)
            cur.execute(
                "SELECT DISTINCT item_id, 1 FROM recommender_dailyitemcount WHERE impressions > 0 "
                f"AND day IN ({', '.join(['%s'] * len(days))})",
                days,
            )
            shown |= _scatter(space_pks, cur, np.int64) > 0
        if ranges:
            spans = " OR ".join(["(timestamp >= %s AND timestamp < %s)"] * len(ranges))
            cur.execute(
                f"SELECT DISTINCT item_id, 1 FROM recommender_event WHERE event_type = %s AND ({spans})",
                [_IMPRESSIONS, *[t for span in ranges for t in span]],
            )
            shown |= _scatter(space_pks, cur, np.int64) > 0
    return shown


def _midnight(now: datetime) -> datetime:
    return now.astimezone(dt_timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


#: A writer commits within this long of the ``ingested_at`` it stamped (an impression flush or an
#: event batch stamps one ``now`` per batch and commits milliseconds later). Impression rows stamped
#: earlier than a read minus this margin are taken as final; later ones are re-checked per batch.
LATE_COMMIT_MARGIN = timedelta(seconds=60)
#: The interaction window counts (a GROUP BY over the window's events) are re-read at most this often.
COUNTS_REFRESH_SECONDS = 300.0
#: New items' vectors are re-checked at least this often even when no item or embedding row moved.
NEW_ITEMS_RECHECK_SECONDS = 300.0

_IMPRESSIONS = int(EventType.IMPRESSION)
# The batches written since a stamp: a handful of rows (one per impression flush or ingested
# batch with impressions), however many impressions they hold.
_BATCHES_SQL = "SELECT id, ingested_at, events FROM recommender_impressionbatch WHERE ingested_at >= %s"
# On PostgreSQL the stamp comes as integer microseconds: parsing several hundred timestamps in
# Python every step cost ~18 ms of the refresh thread (holding the GIL against the requests).
_BATCHES_SQL_PG = (
    "SELECT id, (EXTRACT(EPOCH FROM ingested_at) * 1000000)::bigint, events "
    "FROM recommender_impressionbatch WHERE ingested_at >= %s"
)


class ImpressionTracker:
    """Today's impressions and "ever shown" of one space, kept current by reading only new batches.

    Every writer of impression events stamps a batch's rows with one ``ingested_at`` and adds an
    ``ImpressionBatch`` row (that stamp, the number of events) in the same transaction. Batches
    stamped before ``cut`` (the last read minus :data:`LATE_COMMIT_MARGIN`) are counted once and
    final; each step reads the batch rows stamped since ``cut`` (a handful), and the per-item
    counts of the events of the batches it has not seen (one grouped query on
    ``rec_event_ingested``), so a batch that commits after a later one is found too. A new batch
    with a stamp the tracker has seen (two writers, one stamp), a deletion row (negative
    ``events``: an erased shopper) and a new UTC day mean a full recount
    (:func:`impression_arrays`). ``ever_shown`` is monotone within the day: shown stays shown;
    the lookback's expiry is applied by the full recount once a day.

    Reading batch rows instead of grouping the impression events since ``cut`` by stamp took a
    step after 10 s of 110 req/s from 57-132 ms, growing with the last minute's traffic, to a
    flat 34-43 ms (the new events' per-item counts; the serving benchmark's p99 spikes lined
    up with these steps).
    """

    def __init__(self, space_pks: np.ndarray, now: datetime | None = None) -> None:
        self.pks = np.asarray(space_pks, dtype=np.int64)
        self.today = np.zeros(len(self.pks), np.int64)
        self.shown = np.zeros(len(self.pks), bool)
        self.day = None
        self.cut: datetime | None = None
        self.seen: dict[int, object] = {}  # batch id -> stamp, for the batches stamped since cut
        self.handled: set[int] = set()  # deletion rows already reflected by a recount
        self.full_recounts = 0
        self.recount(now)

    def recount(self, now: datetime | None = None) -> None:
        """Recount today and the lookback from scratch (in place: readers share the arrays)."""
        now = now or timezone.now()
        midnight = _midnight(now)
        cut = now - LATE_COMMIT_MARGIN
        since = now - timedelta(days=rec_settings.SERVING_SHOWN_LOOKBACK_DAYS)
        sql = "SELECT item_id, COUNT(*) FROM recommender_event WHERE event_type = %s AND timestamp >= %s"
        with connection.cursor() as cur:
            # Deletions committed before the counts below are read: the counts reflect them.
            cur.execute("SELECT id FROM recommender_impressionbatch WHERE ingested_at >= %s AND events < 0", [cut])
            handled = {int(r[0]) for r in cur.fetchall()}
            # Only the final part: the batches since ``cut`` are read batch by batch by step().
            cur.execute(sql + " AND ingested_at < %s GROUP BY item_id", [_IMPRESSIONS, midnight, cut])
            today = _scatter(self.pks, cur, np.int64)
        shown = shown_within(self.pks, since, now)
        self.today[:] = today
        self.shown[:] = shown
        self.day, self.cut, self.seen, self.handled = midnight, cut, {}, handled
        self.full_recounts += 1
        self.step(now)

    def step(self, now: datetime | None = None) -> None:
        """Add the impressions of batches not counted yet; a new UTC day recounts."""
        now = now or timezone.now()
        midnight = _midnight(now)
        if midnight != self.day:
            self.recount(now)
            return
        with connection.cursor() as cur:
            cur.execute(_BATCHES_SQL_PG if connection.vendor == "postgresql" else _BATCHES_SQL, [self.cut])
            batches = [(int(i), stamp, int(n)) for i, stamp, n in cur.fetchall()]
            new = [(i, stamp) for i, stamp, n in batches if i not in self.seen and i not in self.handled]
            known = set(self.seen.values())
            deleted = any(n < 0 and i not in self.handled for i, _, n in batches)
            if deleted or any(stamp in known for _, stamp in new):
                self.recount(now)
                return
            for start in range(0, len(new), 500):
                chunk = new[start : start + 500]
                stamps = sorted({_stamp_value(stamp) for _, stamp in chunk})
                marks = ", ".join(["%s"] * len(stamps))
                # The stamps as constants, so that the plan is an index scan of rec_event_ingested
                # whatever the statistics say (a sub-select of the batch rows was planned as a
                # scan of all of today's impressions on a freshly loaded database: 1 s a step).
                counts = (
                    "SELECT item_id, COUNT(*) AS n FROM recommender_event WHERE event_type = %s AND timestamp >= %s "
                    f"AND ingested_at IN ({marks}) GROUP BY item_id"
                )
                params = [_IMPRESSIONS, midnight, *stamps]
                if connection.vendor == "postgresql":
                    # Two arrays in one row: psycopg parses them in C, where 20k (item, count)
                    # tuples held the GIL against the requests for ~20 ms.
                    cur.execute(f"SELECT array_agg(item_id), array_agg(n) FROM ({counts}) AS c", params)
                    ids, ns = cur.fetchone()
                    self._add_arrays(ids or [], ns or [])
                else:
                    cur.execute(counts, params)
                    self._add(cur.fetchall())
                self.seen.update(chunk)
        cut = now - LATE_COMMIT_MARGIN
        if cut > self.cut:
            self.cut = cut
            self.seen = {i: stamp for i, stamp in self.seen.items() if _not_before(stamp, cut)}

    def _add(self, rows: list[tuple[int, int]]) -> None:
        if rows:
            arr = np.asarray(rows, dtype=np.int64)
            self._add_arrays(arr[:, 0], arr[:, 1])

    def _add_arrays(self, item_pks, counts) -> None:
        ids, ns = np.asarray(item_pks, dtype=np.int64), np.asarray(counts, dtype=np.int64)
        if not len(ids):
            return
        at = _positions(self.pks, ids)
        hit = at >= 0
        np.add.at(self.today, at[hit], ns[hit])
        self.shown[at[hit]] = True

    def resized(self, space_pks: np.ndarray) -> "ImpressionTracker":
        """This tracker's state over another space's items (new items start at their state unknown: 0)."""
        out = object.__new__(ImpressionTracker)
        out.pks = np.asarray(space_pks, dtype=np.int64)
        at = _positions(self.pks, out.pks)
        hit = at >= 0
        out.today = np.zeros(len(out.pks), np.int64)
        out.today[hit] = self.today[at[hit]]
        out.shown = np.zeros(len(out.pks), bool)
        out.shown[hit] = self.shown[at[hit]]
        out.day, out.cut, out.seen, out.full_recounts = self.day, self.cut, dict(self.seen), self.full_recounts
        out.handled = set(self.handled)
        return out


_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


def _stamp_value(stamp):
    """A stamp as a query parameter: integer microseconds (:data:`_BATCHES_SQL_PG`) become the
    exact datetime again; a stamp as the database returned it stays as it is."""
    return _EPOCH + timedelta(microseconds=stamp) if isinstance(stamp, int) else stamp


def _not_before(stamp, cut: datetime) -> bool:
    """``stamp >= cut`` for a stamp as the database returned it (a datetime, integer microseconds
    since the epoch from :data:`_BATCHES_SQL_PG`, or text on SQLite)."""
    if isinstance(stamp, int):
        return stamp >= round(cut.timestamp() * 1_000_000)
    if isinstance(stamp, datetime):
        return (stamp if timezone.is_aware(stamp) else timezone.make_aware(stamp, dt_timezone.utc)) >= cut
    return str(stamp) >= cut.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


_ITEM_COLUMNS = (
    "id, external_id, title, category, CAST(price AS DOUBLE PRECISION), "
    "is_active AND NOT is_placeholder AND deleted_at IS NULL, in_stock, {epoch}, deleted_at IS NULL"
)


def _item_sql(where: str = "") -> str:
    # Raw SQL with the casts done by the database: no Decimal or datetime objects per row.
    epoch = (
        "EXTRACT(EPOCH FROM created_at)::float8" if connection.vendor == "postgresql"
        else "CAST(strftime('%%s', created_at) AS REAL)"
    )
    return f"SELECT {_ITEM_COLUMNS.format(epoch=epoch)} FROM {Item._meta.db_table} {where}"


def _embeddings_mark() -> tuple:
    from ..models import ItemEmbedding

    with connection.cursor() as cur:
        # Embeddings of new items add rows (keyed by item); a re-embedded text is caught by the recheck.
        cur.execute(f"SELECT MAX(item_id), COUNT(*) FROM {ItemEmbedding._meta.db_table}")
        return tuple(cur.fetchone())


@dataclass
class _Columns:
    ext: np.ndarray
    titles: np.ndarray
    cats: np.ndarray  # object str
    price: np.ndarray
    in_stock: np.ndarray
    active: np.ndarray
    live: np.ndarray
    created: np.ndarray

    @classmethod
    def empty(cls, n: int) -> "_Columns":
        return cls(np.full(n, "", dtype=object), np.full(n, "", dtype=object), np.full(n, "", dtype=object),
                   np.full(n, np.nan), np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool),
                   np.zeros(n, np.float64))

    def apply(self, space_pks: np.ndarray, rows: list[tuple]) -> np.ndarray:
        """Write ``rows`` (see :data:`_ITEM_COLUMNS`) at their items' positions; returns the positions."""
        if not rows:
            return np.zeros(0, np.int64)
        ids, e, t, c, p, a, st, cr, lv = zip(*rows)
        at = _positions(space_pks, np.array(ids, dtype=np.int64))
        hit = at >= 0
        j = at[hit]
        for dst, src in ((self.ext, e), (self.titles, t), (self.cats, c)):
            dst[j] = np.array(src, dtype=object)[hit]
        self.price[j] = np.array(p, dtype=np.float64)[hit]  # None -> nan
        self.active[j] = np.array(a, dtype=bool)[hit]
        self.in_stock[j] = np.array(st, dtype=bool)[hit]
        self.created[j] = np.array(cr, dtype=np.float64)[hit]
        self.live[j] = np.array(lv, dtype=bool)[hit]
        return j


def load_catalog(space_pks: np.ndarray, windows: set[int], now: datetime | None = None,
                 tracker: ImpressionTracker | None = None) -> Catalog:
    """Every per-item array the serving path needs, for the items of one index space.

    ``tracker``: impressions already kept for these (or other) items, carried over instead of
    recounted.
    """
    space_pks = np.asarray(space_pks, dtype=np.int64)
    cols = _Columns.empty(len(space_pks))
    read_at = timezone.now()
    mark = _embeddings_mark()
    with connection.cursor() as cur:
        cur.execute(_item_sql(), [])  # params (none): the same "%%" escaping as the other reads
        rows = cur.fetchall()
    cols.apply(space_pks, rows)
    table_ids = np.sort(np.array([r[0] for r in rows], dtype=np.int64))
    category, codes = _category_codes(cols.cats)
    if tracker is None:
        tracker = ImpressionTracker(space_pks, now)
    elif not np.array_equal(tracker.pks, space_pks):
        tracker = tracker.resized(space_pks)
    return _catalog(space_pks, cols, category, codes,
                    {w: interaction_counts(space_pks, w, now) for w in windows}, tracker,
                    by_external_id={e: j for j, e in enumerate(cols.ext.tolist()) if e},
                    items_read_at=read_at, table_ids=table_ids, embeddings_mark=mark)


def _catalog(space_pks, cols: _Columns, category, codes, counts, tracker, **extra) -> Catalog:
    return Catalog(
        pks=space_pks, external_ids=cols.ext, titles=cols.titles, category=category, category_codes=codes,
        price=cols.price, in_stock=cols.in_stock, is_active=cols.active, is_live=cols.live,
        created_ts=cols.created, counts=counts, impressions_today=tracker.today, ever_shown=tracker.shown,
        tracker=tracker, **extra,
    )


@dataclass
class ItemChanges:
    """Item rows written since a catalog's last read (see :func:`read_item_changes`)."""

    rows: list[tuple]
    table_ids: np.ndarray
    read_at: datetime
    embeddings_mark: tuple
    hard_deleted: bool

    def moves_new_items(self, catalog: Catalog) -> bool:
        """Whether the space's appended new items may change: an item it lacks, or eligibility, moved.

        ``Catalog.is_active`` is exactly the eligibility of :func:`state._new_item_vectors` (live,
        active, not a placeholder); a text vector that moved shows in ``embeddings_mark``.
        """
        if self.embeddings_mark != catalog.embeddings_mark:
            return True
        if not self.rows:
            return False
        at = _positions(catalog.pks, np.array([r[0] for r in self.rows], dtype=np.int64))
        eligible = np.array([bool(r[5]) for r in self.rows])
        return bool((at < 0).any() or (catalog.is_active[at[at >= 0]] != eligible[at >= 0]).any())


def read_item_changes(catalog: Catalog) -> ItemChanges | None:
    """The item rows changed since ``catalog`` was read (``updated_at`` within the late-commit margin).

    Every write path of items stamps ``updated_at`` (the upsert SQL, the portable upsert, the
    soft delete, placeholders). A hard delete leaves no row: the item count gives it away and
    the caller reads the whole catalog again. None when the catalog was never read incrementally.
    """
    if catalog.items_read_at is None or catalog.table_ids is None:
        return None
    read_at = timezone.now()
    mark = _embeddings_mark()
    with connection.cursor() as cur:
        cur.execute(_item_sql("WHERE updated_at >= %s"), [catalog.items_read_at - LATE_COMMIT_MARGIN])
        rows = cur.fetchall()
        cur.execute(f"SELECT COUNT(*) FROM {Item._meta.db_table}")
        (total,) = cur.fetchone()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    table_ids = catalog.table_ids
    added = ids[~np.isin(ids, table_ids)] if len(ids) else ids
    if len(added):
        table_ids = np.union1d(table_ids, added)
    return ItemChanges(rows=rows, table_ids=table_ids, read_at=read_at, embeddings_mark=mark,
                       hard_deleted=int(total) != len(table_ids))


def refresh_catalog(old: Catalog, space_pks: np.ndarray, changes: ItemChanges, windows: set[int],
                    counts_due: bool, now: datetime | None = None) -> Catalog:
    """``old`` with ``changes`` applied, over ``space_pks`` (the same items, or with new ones appended).

    Returns ``old`` itself when nothing it holds changed, so that its derived caches stay; else
    a new Catalog (its arrays copies: requests keep reading the old one meanwhile). Items of the
    space ``old`` did not hold are read by id. Impressions stay with the same tracker (resized
    when the items changed).
    """
    space_pks = np.asarray(space_pks, dtype=np.int64)
    same_layout = np.array_equal(space_pks, old.pks)
    extra = dict(items_read_at=changes.read_at, table_ids=changes.table_ids, embeddings_mark=changes.embeddings_mark,
                 counts_at=old.counts_at)
    if same_layout and not changes.rows and not counts_due:  # the usual tick: nothing to copy
        for name, value in extra.items():
            setattr(old, name, value)
        return old
    if same_layout:
        at = np.arange(len(space_pks))
        missing = np.zeros(0, np.int64)
    else:
        at = _positions(old.pks, space_pks)
        missing = space_pks[at < 0]
    cols = _Columns.empty(len(space_pks))
    hit = at >= 0
    names = np.empty(len(old.category_codes) + 1, dtype=object)
    names[-1] = ""  # code -1: no category
    for name, code in old.category_codes.items():
        names[code] = name
    for dst, src in (
        (cols.ext, old.external_ids), (cols.titles, old.titles), (cols.cats, names[old.category]),
        (cols.price, old.price), (cols.in_stock, old.in_stock), (cols.active, old.is_active),
        (cols.live, old.is_live), (cols.created, old.created_ts),
    ):
        dst[hit] = src[at[hit]]
    rows = changes.rows
    if len(missing):
        have = {r[0] for r in rows}
        need = [int(pk) for pk in missing if int(pk) not in have]
        with connection.cursor() as cur:
            for start in range(0, len(need), 500):
                chunk = need[start : start + 500]
                cur.execute(_item_sql(f"WHERE id IN ({', '.join(['%s'] * len(chunk))})"), chunk)
                rows = rows + cur.fetchall()
    before = None
    if same_layout and rows:
        # Positions the changed rows touch, and their values before: to tell a real change.
        touched = _positions(space_pks, np.array([r[0] for r in rows], dtype=np.int64))
        touched = touched[touched >= 0]
        before = _snapshot(cols, touched)
    touched = cols.apply(space_pks, rows)
    changed = not same_layout or (before is not None and before != _snapshot(cols, touched))
    if not changed and not counts_due:
        for name, value in extra.items():  # bookkeeping only: no array a request reads moves
            setattr(old, name, value)
        return old
    if changed and not np.isin(np.unique(cols.cats[touched]), ["", *old.category_codes]).all():
        category, codes = _category_codes(cols.cats)
    elif changed:
        codes = old.category_codes
        category = old.category.copy() if same_layout else np.full(len(space_pks), -1, np.int64)
        if not same_layout:
            category[hit] = old.category[at[hit]]
        category[touched] = [codes.get(str(c), -1) for c in cols.cats[touched]]
    else:
        category, codes = old.category, old.category_codes
    if changed and same_layout:
        by_ext = dict(old.by_external_id)
        for j in touched.tolist():
            prev = old.external_ids[j]
            if prev and by_ext.get(prev) == j:
                del by_ext[prev]
        by_ext.update({cols.ext[j]: j for j in touched.tolist() if cols.ext[j]})
    elif changed:
        by_ext = {e: j for j, e in enumerate(cols.ext.tolist()) if e}
    else:
        by_ext = old.by_external_id
    if counts_due:
        counts = {w: interaction_counts(space_pks, w, now) for w in set(windows) | set(old.counts)}
    elif same_layout:
        counts = dict(old.counts)
    else:
        counts = {}
        for w, c in old.counts.items():
            counts[w] = np.zeros(len(space_pks), c.dtype)
            counts[w][hit] = c[at[hit]]
    tracker = old.tracker if same_layout else old.tracker.resized(space_pks)
    out = _catalog(space_pks, cols, category, codes, counts, tracker, by_external_id=by_ext, **extra)
    return out


def _snapshot(cols: _Columns, j: np.ndarray) -> list:
    return [
        cols.ext[j].tolist(), cols.titles[j].tolist(), cols.cats[j].tolist(),
        np.nan_to_num(cols.price[j], nan=-1.0).tolist(), cols.in_stock[j].tolist(), cols.active[j].tolist(),
        cols.live[j].tolist(), cols.created[j].tolist(),
    ]


def category_code(catalog: Catalog, name: str | None) -> int | None:
    """The code of a category filter; UNKNOWN_CATEGORY when no item has it."""
    if name is None:
        return None
    return catalog.category_codes.get(name, UNKNOWN_CATEGORY)


def is_new(catalog: Catalog, idx: np.ndarray, now: datetime) -> np.ndarray:
    """(m,) bool created within ``SERVING_NEW_ITEM_DAYS`` of ``now``."""
    cutoff = now.timestamp() - rec_settings.SERVING_NEW_ITEM_DAYS * 86_400.0
    return catalog.created_ts[idx] >= cutoff if not math.isnan(cutoff) else np.zeros(len(idx), bool)
