"""What one serving process holds: the loaded index spaces, their catalogs, and the policy snapshot.

Every reference here points at an immutable object that is replaced whole, never edited, so
a request that picked one up finishes on it while the next one sees the new one. The checks
are cheap and rate-limited per process (one tiny query per ``SERVING_VERSION_CHECK_SECONDS``
for the active version, one per ``SERVING_POLICY_CHECK_SECONDS`` for policy edits); the
request that finds a change loads the new object while the others keep serving the old
(a non-blocking lock), and a version that fails to load leaves the old one serving.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from django.db import connection

from ..conf import settings as rec_settings
from ..features.embeddings import load_item_vectors, text_model_name
from ..ml.projection import identity_projection, output_dim, project_new_items
from ..models import InterestSegment, Item, ItemEmbedding, ModelVersion
from ..ranking.policy import PolicyConfig, Promotion
from . import policies as pol
from .catalog import (
    COUNTS_REFRESH_SECONDS, NEW_ITEMS_RECHECK_SECONDS, Catalog, load_catalog, read_item_changes, refresh_catalog,
)
from .index import IndexUnavailable, VectorIndex

log = logging.getLogger(__name__)

#: The clock every rate limit reads; tests replace it to freeze or advance time.
clock = time.monotonic


@dataclass(eq=False)
class Space:
    """One index space: a model version's vectors (or the text fallback) and its catalog."""

    version_id: int | None
    index: VectorIndex
    catalog: Catalog
    # segment number -> (m,) item indices of its most distinctive items
    segments: dict[int, np.ndarray] = field(default_factory=dict)
    _configs: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # clock() when the appended new items were last checked (see _with_new_items)
    new_items_at: float = 0.0

    @property
    def version_name(self) -> str | None:
        return self.index.name or None

    def policy_config(self, row: pol.PolicyRow, key: tuple, k: int) -> PolicyConfig:
        """The pure core's PolicyConfig of ``row`` in this space (cached per policy snapshot and k)."""
        ck = (key, row.id, k)
        cfg = self._configs.get(ck)
        if cfg is None:
            try:
                cfg = _policy_config(row, self, k)
            except ValueError:  # a value the admin let through but the policy core rejects
                log.exception("exposure policy %r is invalid; serving without it until it is fixed", row.name)
                cfg = PolicyConfig()
            if len(self._configs) > 512:
                self._configs.clear()
            self._configs[ck] = cfg
        return cfg


def _policy_config(row: pol.PolicyRow, space: Space, k: int) -> PolicyConfig:
    index, catalog = space.index, space.catalog
    promos = []
    item_pks = [p[1] for p in row.promotions if p[1] is not None]
    item_at = dict(zip(item_pks, index.item_index(np.array(item_pks, dtype=np.int64)).tolist()))
    for boost, item_pk, category, start, end in row.promotions:
        if item_pk is not None:
            if item_at.get(item_pk, -1) >= 0:
                promos.append(Promotion(boost=boost, item=item_at[item_pk], start=start, end=end))
        elif category in catalog.category_codes:
            promos.append(Promotion(boost=boost, category=catalog.category_codes[category], start=start, end=end))
    pinned = index.item_index(np.array(row.pinned, dtype=np.int64))
    buried = index.item_index(np.array(row.buried, dtype=np.int64))
    slots = min(row.exploration_slots, k)
    return PolicyConfig(
        tail_boost=row.tail_boost,
        min_tail_share=row.min_tail_share,
        diversity=row.diversity,
        # The last positions of the list: exploration costs the shopper least there.
        exploration_positions=tuple(range(k - slots, k)),
        promotions=tuple(promos),
        pinned=tuple(int(i) for i in pinned if i >= 0),
        buried=tuple(int(i) for i in buried if i >= 0),
        daily_impression_cap=row.daily_impression_cap,
        exposure_spreading=row.exposure_spreading,
    )


def _windows(snapshot: pol.PolicySnapshot | None) -> set[int]:
    rows = list(snapshot.policies.values()) if snapshot else []
    return {r.head_window_days for r in rows} | {pol.BUILT_IN.head_window_days}


def _load_segments(version_id: int, index: VectorIndex, catalog: Catalog) -> dict[int, np.ndarray]:
    out = {}
    for number, top in InterestSegment.objects.filter(model_version_id=version_id).values_list("index", "top_items"):
        idx = [catalog.by_external_id.get(t.get("item_id")) for t in top or []]
        out[number] = np.array([i for i in idx if i is not None], dtype=np.int64)
    return out


def _new_item_vectors(index: VectorIndex) -> tuple[np.ndarray, np.ndarray]:
    """(pks, (m, d) vectors) of live, active items the version does not know but can place.

    Items created (or first embedded) after the version was trained: their stored text
    vectors projected into the version's space (see :mod:`recommender.ml.projection`), so
    they are recommended before the next retrain. Read at load and catalog refresh only.
    """
    none = np.zeros(0, np.int64), np.zeros((0, index.dim), np.float32)
    proj = index.text_projection
    if proj is None:
        return none
    if output_dim(proj) != index.dim:
        log.warning("version %s: its text projection gives width %d, its space is %d; new items wait for a retrain",
                    index.name, output_dim(proj), index.dim)
        return none
    eligible = np.array(
        Item.objects.live().filter(is_active=True, is_placeholder=False).order_by("pk").values_list("pk", flat=True),
        dtype=np.int64,
    )
    own = index.item_pks[: index.n_trained]
    new = eligible[~np.isin(eligible, own)] if len(own) else eligible
    if not len(new):
        return none
    pks, vecs = [], []
    for start in range(0, len(new), 5000):
        chunk = new[start : start + 5000].tolist()
        rows = ItemEmbedding.objects.filter(model_name=text_model_name(), item_id__in=chunk).values_list(
            "item_id", "dim", "vector"
        )
        for pk, d, blob in rows:
            if index.can_place(int(d)):
                pks.append(int(pk))
                vecs.append(np.frombuffer(bytes(blob), dtype=np.float32, count=int(d)))
    if not pks:
        return none
    order = np.argsort(pks)
    text = np.stack(vecs)[order]
    return np.asarray(pks, dtype=np.int64)[order], project_new_items(text, proj)


def _with_new_items(index: VectorIndex) -> VectorIndex:
    """``index`` with the vectors of newer items appended (the same object when nothing changed)."""
    pks, vectors = _new_item_vectors(index)
    have = index.new_item_pks
    if np.array_equal(pks, have) and (
        not len(pks) or np.array_equal(vectors, np.asarray(index.item_vectors[index.n_trained :]))
    ):
        return index
    if len(pks) or len(have):
        log.info("version %r: serving %d items newer than it by their text", index.name, len(pks))
    return index.with_new_items(pks, vectors)


def _load_space(version: tuple[int, str, str] | None, snapshot: pol.PolicySnapshot | None) -> Space:
    """Open a version's artifact (or the text-embedding fallback) and read its catalog."""
    threshold = rec_settings.SERVING_ANN_MIN_CELLS
    if version is None:
        # No trained model: the live catalog, searched by text embeddings when items have them.
        pks = np.array(Item.objects.live().order_by("pk").values_list("pk", flat=True), dtype=np.int64)
        vectors = load_item_vectors(pks)
        if vectors is None:
            vectors = np.zeros((len(pks), 1), dtype=np.float32)
        # Items embedded later are appended at catalog refresh, as for a version.
        projection = identity_projection(vectors.shape[1]) if vectors.shape[1] > 1 else None
        index = VectorIndex(name="", item_vectors=vectors, item_pks=pks, ann_min_cells=threshold,
                            text_projection=projection)
    else:
        index = VectorIndex.load(version[2], version[1], ann_min_cells=threshold)
    index = _with_new_items(index)
    catalog = load_catalog(index.item_pks, _windows(snapshot))
    catalog.built_at = catalog.impressions_at = catalog.counts_at = now = clock()
    segments = _load_segments(version[0], index, catalog) if version is not None else {}
    return Space(version_id=None if version is None else version[0], index=index, catalog=catalog, segments=segments,
                 new_items_at=now)


def limit_blas_threads(n: int | None) -> None:
    """Cap this process's BLAS threads (threadpoolctl when installed; else the env vars rule)."""
    if n is None:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        log.info("threadpoolctl is not installed; set OPENBLAS_NUM_THREADS=%d for the serving processes", n)
        return
    threadpool_limits(limits=n, user_api="blas")  # called, not entered: the cap stays


def freeze_gc() -> None:
    """Move the objects alive now out of the garbage collector's sight (``SERVING_GC_FREEZE``).

    They are long-lived (modules, classes, the loaded catalogs) and would otherwise be walked
    by every full collection, stalling the process for ~0.1-0.3 s. Reference counting still
    frees them when they are dropped; only a reference cycle among them would stay.
    """
    if rec_settings.SERVING_GC_FREEZE:
        gc.collect()
        gc.freeze()


class ServingState:
    """The per-process holder; use :func:`get_state`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (active version row, version id -> Space): replaced in one assignment, so a reader
        # never sees a new active version with the old spaces or the other way round.
        self._view: tuple[tuple[int, str, str] | None, dict[int | None, Space]] = (None, {})
        self.snapshot: pol.PolicySnapshot | None = None
        self.version_checked_at = -np.inf
        self.policy_checked_at = -np.inf
        self.loaded = False
        self._worker: threading.Thread | None = None

    # --- the request path ------------------------------------------------------------------------
    def current(self) -> tuple[Space, pol.PolicySnapshot]:
        """The active space and the policy snapshot, after the rate-limited checks."""
        if not self.loaded:
            with self._lock:  # the very first request of a process waits for the first load
                if not self.loaded:
                    limit_blas_threads(rec_settings.SERVING_BLAS_THREADS)
                    self._check(force=True)
                    self.loaded = True
                    freeze_gc()
        elif self._due() and self._lock.acquire(blocking=False):
            try:
                self._check(force=False)
            finally:
                self._lock.release()
        active, spaces = self._view
        return spaces[None if active is None else active[0]], self.snapshot

    @property
    def active(self) -> tuple[int, str, str] | None:
        return self._view[0]

    @property
    def spaces(self) -> dict[int | None, Space]:
        return self._view[1]

    @property
    def active_id(self) -> int | None:
        return None if self.active is None else self.active[0]

    def space_for(self, version_id: int | None) -> Space:
        """The space of a variant's model version, loaded on first use; the active one if it fails."""
        active, spaces = self._view
        active_id = None if active is None else active[0]
        if version_id is None or version_id == active_id:
            return spaces[active_id]
        space = spaces.get(version_id)
        if space is not None:
            return space
        with self._lock:
            active, spaces = self._view
            space = spaces.get(version_id)
            if space is None:
                row = ModelVersion.objects.filter(pk=version_id).values_list("pk", "name", "artifact_path").first()
                try:
                    space = _load_space(row, self.snapshot) if row else None
                except (IndexUnavailable, OSError, ValueError):
                    log.exception("A/B variant's model version %s cannot be loaded; serving the active one", version_id)
                    space = None
                # Remember a failure too (as the active space) so it is not retried per request.
                space = space or spaces[None if active is None else active[0]]
                self._view = (active, {**spaces, version_id: space})
        return space

    # --- checks and swaps --------------------------------------------------------------------------
    def _due(self) -> bool:
        now = clock()
        s = rec_settings
        if now - self.version_checked_at >= s.SERVING_VERSION_CHECK_SECONDS:
            return True
        if now - self.policy_checked_at >= s.SERVING_POLICY_CHECK_SECONDS:
            return True
        return any(self._stale(space, now) for space in self.spaces.values())

    @staticmethod
    def _stale(space: Space, now: float) -> str | None:
        if now - space.catalog.built_at >= rec_settings.SERVING_CATALOG_REFRESH_SECONDS:
            return "catalog"
        if now - space.catalog.impressions_at >= rec_settings.SERVING_IMPRESSIONS_REFRESH_SECONDS:
            return "impressions"
        return None

    def _check(self, force: bool) -> None:
        """The tiny checks inline; loading a version or rebuilding a catalog as heavy work."""
        now = clock()
        s = rec_settings
        if force or now - self.policy_checked_at >= s.SERVING_POLICY_CHECK_SECONDS:
            key = pol.change_key()
            if self.snapshot is None or key != self.snapshot.key:
                self.snapshot = pol.load_snapshot(key)
            self.policy_checked_at = now
        if force or now - self.version_checked_at >= s.SERVING_VERSION_CHECK_SECONDS:
            row = ModelVersion.objects.filter(is_active=True).values_list("pk", "name", "artifact_path").first()
            self.version_checked_at = now
            if force:
                self._swap(row)
                return
            if row != self.active:
                self._heavy(self._swap, row)
                return
        stale = {vid: self._stale(space, now) for vid, space in self.spaces.items()}
        if any(stale.values()):
            self._heavy(self._refresh_catalogs, stale)

    def _heavy(self, fn, arg) -> None:
        """Run ``fn(arg)`` off the request path when configured (one such job at a time)."""
        if not rec_settings.SERVING_REFRESH_IN_BACKGROUND:
            fn(arg)
            return
        if self._worker is not None and self._worker.is_alive():
            return

        def run() -> None:
            try:
                with self._lock:
                    fn(arg)
            except Exception:  # keep serving what is loaded; the next check tries again
                log.exception("serving refresh failed")
            finally:
                connection.close()  # this thread's own connection

        self._worker = threading.Thread(target=run, name="serving-refresh", daemon=True)
        self._worker.start()

    def _refresh_catalogs(self, stale: dict[int | None, str | None]) -> None:
        now = clock()
        for version_id, what in stale.items():
            space = self.spaces.get(version_id)
            if space is None or what is None:
                continue
            if what == "catalog":
                new = self._refreshed(space, now)
                if new is space:
                    continue
                active, spaces = self._view
                if spaces.get(version_id) is space:  # not swapped away meanwhile
                    self._view = (active, {**spaces, version_id: new})
            else:
                # In place: CatalogArrays share the tracker's arrays; a torn read only blurs a count.
                space.catalog.tracker.step()
                space.catalog.impressions_at = now

    def _refreshed(self, space: Space, now: float) -> Space:
        """``space`` with the items changed since its last read applied (itself when nothing moved).

        Reads only the changed item rows; the interaction window counts every
        ``COUNTS_REFRESH_SECONDS``; the new items' vectors when an item or a text embedding
        moved (or every ``NEW_ITEMS_RECHECK_SECONDS``). A hard-deleted item means a full read.
        """
        old = space.catalog
        windows = _windows(self.snapshot)
        changes = read_item_changes(old)
        new_items_at = space.new_items_at
        if changes is None or changes.hard_deleted:
            index = _with_new_items(space.index)
            fresh = load_catalog(index.item_pks, windows, tracker=old.tracker)
            fresh.counts_at = new_items_at = now
        else:
            counts_due = now - old.counts_at >= COUNTS_REFRESH_SECONDS
            # The periodic recheck never in the same tick as the window counts: one heavy part a tick.
            due = changes.moves_new_items(old) or (
                not counts_due and now - space.new_items_at >= NEW_ITEMS_RECHECK_SECONDS
            )
            index = _with_new_items(space.index) if due else space.index
            if due:
                new_items_at = now
            fresh = refresh_catalog(old, index.item_pks, changes, windows, counts_due)
            if counts_due:
                fresh.counts_at = now
        fresh.tracker.step()
        fresh.built_at = fresh.impressions_at = now
        if fresh is old and index is space.index:
            space.new_items_at = new_items_at
            return space
        # The version's own items keep their indices: its segments stay valid.
        return Space(space.version_id, index, fresh, space.segments, new_items_at=new_items_at)

    def _swap(self, row: tuple[int, str, str] | None) -> None:
        try:
            space = _load_space(row, self.snapshot)
        except (IndexUnavailable, OSError, ValueError):
            if self.active_id in self.spaces:
                log.exception("model version %s cannot be loaded; the previous one keeps serving", row)
                return
            log.exception("model version %s cannot be loaded; serving popularity and text similarity", row)
            row, space = None, _load_space(None, self.snapshot)
        # One assignment: readers see either the old version and spaces or the new ones.
        self._view = (row, {row[0] if row else None: space})
        if self.loaded:
            freeze_gc()


_STATE = ServingState()


def get_state() -> ServingState:
    return _STATE


def reset_state() -> None:
    """Forget everything loaded (tests; a process that changes databases)."""
    global _STATE
    _STATE = ServingState()
