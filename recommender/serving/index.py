"""An immutable in-memory index of one model version's vectors. Pure numpy; never imports Django or torch.

The artifact's ``.npy`` files are opened with ``mmap_mode="r"``: every gunicorn worker maps
the same file pages, so N workers cost the memory of one copy (plus what each touches).
A new version is a new :class:`VectorIndex`; the serving state swaps the reference, so a
request that already holds the old one finishes on it.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..ml.projection import load_projection, text_dim


class IndexUnavailable(Exception):
    """An artifact folder is missing or malformed; the message says which file."""


#: hnswlib's search breadth (it searches at least as wide as the ``k`` asked for). For the
#: top 100 of 100k x 64 clustered vectors (session 8, 600 users' vectors): ef=128 took 187 us
#: of CPU a query and found 0.972 of the exact top-20 (recall@100 0.862), against 264 us and
#: 0.979 (0.882) at ef=256.
ANN_EF = 128


def _pk_lookup(pks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted pks, their positions) for a vectorised pk -> index search."""
    order = np.argsort(pks, kind="stable")
    return pks[order], order


def _find(sorted_pks: np.ndarray, order: np.ndarray, pks: np.ndarray) -> np.ndarray:
    """Index of each of ``pks`` (m,) in the space, -1 where absent."""
    pks = np.asarray(pks, dtype=np.int64).reshape(-1)
    if not len(sorted_pks) or not len(pks):
        return np.full(len(pks), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_pks, pks)
    pos[pos == len(sorted_pks)] = 0
    hit = sorted_pks[pos] == pks
    return np.where(hit, order[pos], -1).astype(np.int64)


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest of (m,) ``scores``, best first (ties in index order).

    On a large array, a threshold from a strided sample (about 4,096 scores) first cuts the
    field to a few times ``n``; every item at or above it is kept, so the result is exact,
    and when the sample misjudges (fewer than ``n`` pass) the full partition runs. On 100k
    items this is ~0.1 ms instead of ~1 ms for ``argpartition`` over everything.
    """
    m = len(scores)
    n = min(n, m)
    part = None
    if m >= 4096 and n * 8 < m:
        sample = scores[:: m // 4096]
        r = min(len(sample) - 1, 2 * n * len(sample) // m + 8)  # ~2n of the m expected above
        cut = np.partition(sample, len(sample) - 1 - r)[len(sample) - 1 - r]
        cand = np.flatnonzero(scores >= cut)
        if len(cand) >= n:
            part = cand[np.argpartition(-scores[cand], n - 1)[:n]] if len(cand) > n else cand
    if part is None:
        part = np.argpartition(-scores, n - 1)[:n] if n < m else np.arange(m)
    return part[np.lexsort((part, -scores[part]))]


@dataclass(frozen=True, eq=False)
class VectorIndex:
    """Item and user vectors of one version, with pk <-> index maps and top-n search.

    Attributes
    ----------
    name : the ModelVersion name ("" for the text-embedding fallback space)
    item_vectors : (n_items, d) float32, possibly a read-only memory map
    item_pks : (n_items,) int64 database ids in index order
    user_vectors : (n_users, d) float32 or None
    user_pks : (n_users,) int64 or None
    ann_min_cells : from this many ``n_items * d`` cells on, search an hnswlib graph (built in
        a background thread of each process, in its private memory, over the version's own
        ``n_trained`` items; exact until it is ready) when hnswlib is installed; None is
        always exact. See ``SERVING_ANN_MIN_CELLS`` in recommender/conf.py for the figures.
    text_projection : the artifact's ``text_projection/`` arrays (see
        :mod:`recommender.ml.projection`), which place items newer than the version by
        their text; None when the version cannot place them
    n_trained : how many leading items the version itself scored; the rest were appended
        by :meth:`with_new_items` (None: all of them)
    """

    name: str
    item_vectors: np.ndarray
    item_pks: np.ndarray
    user_vectors: np.ndarray | None = None
    user_pks: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    ann_min_cells: int | None = None
    text_projection: dict | None = None
    n_trained: int | None = None
    similarity_mask: np.ndarray | None = None
    # [graph or None while it builds], shared by the indexes with_new_items derives from one
    # version (their trained items keep their indices); None: no graph for this index.
    ann_box: list | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n = len(self.item_pks)
        if self.n_trained is None or not 0 <= self.n_trained <= n:
            object.__setattr__(self, "n_trained", n)
        if self.item_vectors.ndim != 2 or self.item_vectors.shape[0] != n:
            raise IndexUnavailable(
                f"item_vectors has shape {self.item_vectors.shape} but item_pks has {n} ids."
            )
        set_ = object.__setattr__
        set_(self, "_items", _pk_lookup(np.asarray(self.item_pks, dtype=np.int64)))
        users = self.user_pks if self.user_pks is not None else np.zeros(0, np.int64)
        set_(self, "_users", _pk_lookup(np.asarray(users, dtype=np.int64)))
        # Norms once per version, for cosine similarity of items (similar items, reasons),
        # over the columns that describe an item (the artifact's similarity_mask; all by default).
        vec = np.asarray(self.item_vectors, dtype=np.float32)
        mask = self.similarity_mask
        if mask is not None and mask.shape != (vec.shape[1],):
            raise IndexUnavailable(f"similarity_mask has shape {mask.shape}; the vectors have {vec.shape[1]} columns.")
        if mask is None:
            mask = np.ones(vec.shape[1], dtype=np.float32)
        set_(self, "_mask", np.asarray(mask, dtype=np.float32))
        norms = np.sqrt(np.einsum("ij,ij->i", vec, vec)).astype(np.float32)
        sim = np.sqrt(np.einsum("ij,ij,j->i", vec, vec, self._mask * self._mask)).astype(np.float32)
        set_(self, "_sim_norms", np.where(sim > 0, sim, 1.0).astype(np.float32))
        set_(self, "_norms", np.where(norms > 0, norms, 1.0).astype(np.float32))
        set_(self, "_tail_cache", ())
        if (
            self.ann_box is None and self.ann_min_cells is not None and self.n_trained
            and self.n_items * self.dim >= self.ann_min_cells
        ):
            # Searched exactly until the graph is built (seconds): the version serves at once.
            set_(self, "ann_box", [None])
            threading.Thread(target=self._build_ann, args=(self.ann_box,), name="ann-build", daemon=True).start()

    @property
    def n_items(self) -> int:
        return len(self.item_pks)

    @property
    def dim(self) -> int:
        return int(self.item_vectors.shape[1])

    @property
    def new_item_pks(self) -> np.ndarray:
        """(m,) pks of the items appended by :meth:`with_new_items`, in index order."""
        return self.item_pks[self.n_trained :]

    def is_appended(self, idx: np.ndarray) -> np.ndarray:
        """(m,) bool: which item indices are newer than the version (placed by their text)."""
        return np.asarray(idx, dtype=np.int64) >= self.n_trained

    def can_place(self, text_width: int) -> bool:
        """Whether text vectors of this width can be projected into this space."""
        return self.text_projection is not None and text_dim(self.text_projection) == text_width

    def with_new_items(self, pks: np.ndarray, vectors: np.ndarray) -> "VectorIndex":
        """A new index: this version's own items plus ``pks`` (m,) with ``vectors`` (m, d).

        Replaces any items appended before. The version's items keep their indices (the
        memory map is only copied when something is appended), so the new index shares this
        one's hnswlib graph (built or still building) instead of building its own: the graph
        covers the version's items and the appended ones are searched exactly (a catalog
        refresh that appends items costs no rebuild).
        """
        pks = np.asarray(pks, dtype=np.int64).reshape(-1)
        n = self.n_trained
        base = self.item_vectors[:n]
        if len(pks):
            vectors = np.asarray(vectors, dtype=np.float32).reshape(len(pks), -1)
            if vectors.shape[1] != self.dim:
                raise IndexUnavailable(f"new item vectors have width {vectors.shape[1]}, the space {self.dim}.")
            item_vectors = np.concatenate([np.asarray(base, dtype=np.float32), vectors])
        else:
            item_vectors = base
        return VectorIndex(
            name=self.name,
            item_vectors=item_vectors,
            item_pks=np.concatenate([self.item_pks[:n], pks]),
            user_vectors=self.user_vectors,
            user_pks=self.user_pks,
            meta=self.meta,
            ann_min_cells=self.ann_min_cells,
            text_projection=self.text_projection,
            n_trained=n,
            similarity_mask=self.similarity_mask,
            ann_box=self.ann_box,
        )

    @classmethod
    def load(cls, path: str | Path, name: str, ann_min_cells: int | None = None) -> "VectorIndex":
        """Open an artifact folder (see training.pipeline) as memory maps."""
        path = Path(path)
        arrays = {}
        for stem in ("item_vectors", "item_pks", "user_vectors", "user_pks"):
            file = path / f"{stem}.npy"
            if not file.exists():
                raise IndexUnavailable(f"{file} is missing: the artifact of {name!r} is incomplete.")
            try:
                # A plain ndarray view of the map: indexing a np.memmap costs twice as much
                # (its __array_finalize__ per result), and that is paid on every request.
                arrays[stem] = np.asarray(np.load(file, mmap_mode="r", allow_pickle=False))
            except (OSError, ValueError) as exc:
                raise IndexUnavailable(f"{file} cannot be read: {exc}.") from exc
        meta_file = path / "meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        try:
            projection = load_projection(path / "text_projection")
        except (OSError, ValueError) as exc:
            raise IndexUnavailable(f"{path / 'text_projection'} cannot be read: {exc}.") from exc
        mask_file = path / "similarity_mask.npy"
        mask = np.load(mask_file, allow_pickle=False).astype(np.float32) if mask_file.exists() else None
        return cls(
            name=name,
            similarity_mask=mask,
            item_vectors=arrays["item_vectors"],
            # Id arrays are small and searched on every request: keep them in private memory.
            item_pks=np.array(arrays["item_pks"], dtype=np.int64),
            user_vectors=arrays["user_vectors"],
            user_pks=np.array(arrays["user_pks"], dtype=np.int64),
            meta=meta,
            ann_min_cells=ann_min_cells,
            text_projection=projection,
        )

    def item_index(self, pks: np.ndarray) -> np.ndarray:
        """(m,) int64 index of each item pk; -1 where the version does not know it."""
        return _find(*self._items, pks)

    def user_vector(self, user_pk: int | None) -> np.ndarray | None:
        """(d,) float32 the user's vector, or None when unknown or all zero (no user space)."""
        if user_pk is None or self.user_vectors is None:
            return None
        at = int(_find(*self._users, np.array([user_pk]))[0])
        if at < 0:
            return None
        vec = np.asarray(self.user_vectors[at], dtype=np.float32)
        return vec if vec.any() else None

    def profile(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
        """(d,) weighted mean of the unit vectors of ``items`` (m,), or None when all are zero."""
        items = np.asarray(items, dtype=np.int64)
        if not len(items):
            return None
        vec = np.asarray(self.item_vectors[items], dtype=np.float32) / self._norms[items, None]
        q = np.asarray(weights, dtype=np.float32) @ vec
        return q if np.any(q) else None

    def search(
        self,
        query: np.ndarray,
        n: int,
        *,
        cosine: bool = False,
        tail: np.ndarray | None = None,
        min_tail: int = 0,
        n_tail: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items by dot product (or cosine) with ``query`` (d,), plus tail back-up.

        A model that favours popular items can fill all ``n`` with head items, and the
        exposure policy's tail quota then has nothing to place. So when fewer than
        ``min_tail`` of the top ``n`` are tail (``tail`` is the (n_items,) bool mask), the
        best ``n_tail`` tail items not already in are appended, ranked exactly (a product
        over the tail items), on both the exact and the graph path.

        On the graph path the top ``n`` are the graph's (approximate) neighbours, but their
        scores are recomputed as exact dot products (hnswlib's ``1 - dist`` loses ~1e-5 in
        float32), so graph and tail back-up scores rank on one scale. hnswlib's ``filter=``
        was measured as the alternative for the back-up and rejected: on a head-biased
        100k x 64 space it found a quarter of the exact tail top-100 (0.25 at ef=256, 0.27
        at ef=4000), the graph's routes lead into the head.

        Returns
        -------
        ids : (m,) int64 distinct item indices (top ``n`` best first, then any tail back-up)
        scores : (m,) float32
        """
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        n = min(n, self.n_items)
        if n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        wants_tail = tail is not None and min_tail > 0 and n_tail > 0
        if wants_tail:
            tail = np.asarray(tail, dtype=bool)
        ann = self._ann
        if ann is not None and not cosine:
            top = self._graph_top(ann, q, n)
            if top is not None:
                scores = np.asarray(self.item_vectors[top] @ q, dtype=np.float32)
                order = np.lexsort((top, -scores))  # exact scores, best first, ties by index
                top, scores = top[order], scores[order]
                if wants_tail and int(tail[top].sum()) < min_tail:
                    extra, extra_scores = self._tail_backup(q, None, top, tail, n_tail)
                    top, scores = np.concatenate([top, extra]), np.concatenate([scores, extra_scores])
                return top, scores
        if cosine:
            q = q * self._mask
            qn = float(np.sqrt(q @ q))
            scores = np.asarray(self.item_vectors @ q) / (self._sim_norms * (qn if qn > 0 else 1.0))
        else:
            scores = np.asarray(self.item_vectors @ q)
        top = _top(scores, n)
        if wants_tail and int(tail[top].sum()) < min_tail:
            extra, _ = self._tail_backup(q, scores, top, tail, n_tail)
            top = np.concatenate([top, extra])
        return top.astype(np.int64), np.asarray(scores[top], dtype=np.float32)

    def _graph_top(self, ann, q: np.ndarray, n: int) -> np.ndarray | None:
        """Up to ``n`` candidate item indices (unordered): the graph's nearest by inner product
        among the items it holds, plus the exact top ``n`` of the items appended after it
        (few: :meth:`with_new_items`); None when the graph cannot give its share.
        """
        held = min(ann.get_current_count(), self.n_items)
        try:
            labels = ann.knn_query(q, k=min(n, held), num_threads=1)[0][0].astype(np.int64)
        except RuntimeError:  # hnswlib found fewer than asked (tiny ef/M): the exact path answers
            return None
        if held < self.n_items:
            extra = np.asarray(self.item_vectors[held:] @ q)
            labels = np.concatenate([labels, held + _top(extra, n)])
            scores = np.asarray(self.item_vectors[labels] @ q)
            labels = labels[_top(scores, n)]
        return labels

    def _tail_index(self, tail: np.ndarray) -> np.ndarray:
        """(t,) sorted indices of the ``tail`` mask, cached per mask content.

        The cache holds copies of the last four masks and matches by content, not identity:
        services build a fresh ``~head`` per request, and a caller may edit a mask in place.
        Comparing 100k booleans costs ~6 us against ~50 us for ``flatnonzero``.
        """
        tail = np.asarray(tail, dtype=bool)
        if tail.shape != (self.n_items,):
            raise ValueError(f"tail has shape {tail.shape}; the index has {self.n_items} items.")
        cache = self._tail_cache
        for mask, idx in cache:
            if np.array_equal(mask, tail):
                return idx
        idx = np.flatnonzero(tail)
        # One reference swap: concurrent readers see the old or the new tuple, never half of one.
        object.__setattr__(self, "_tail_cache", ((tail.copy(), idx),) + cache[:3])
        return idx

    def _tail_backup(
        self, q: np.ndarray, scores: np.ndarray | None, top: np.ndarray, tail: np.ndarray, n_tail: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best ``n_tail`` tail items not in ``top``, best first (ties by index), and their scores.

        ``scores`` is the full (n_items,) score vector when the caller has one (exact path);
        otherwise the tail's scores are computed here: a gather of the tail rows when the tail
        is small (under a fifth of the items), else the full product indexed by the tail (a
        gather of most rows copies more memory than the product reads: 3.4 ms vs 1.0 ms on
        80k of 100k x 64).
        """
        tail_idx = self._tail_index(tail)
        if not len(tail_idx):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if scores is not None:
            tail_scores = np.asarray(scores[tail_idx])
        elif len(tail_idx) * 5 < self.n_items:
            tail_scores = np.asarray(self.item_vectors[tail_idx] @ q)
        else:
            tail_scores = np.asarray(self.item_vectors @ q)[tail_idx]
        # Ask for enough to survive dropping the tail items already in the top.
        taken = top[tail[top]]
        cand = _top(tail_scores, n_tail + len(taken))
        ids = tail_idx[cand]
        keep = ~np.isin(ids, taken)
        ids, cand = ids[keep][:n_tail], cand[keep][:n_tail]
        return ids.astype(np.int64), np.asarray(tail_scores[cand], dtype=np.float32)

    def cosine(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(len(a), len(b)) cosine similarity of item indices ``a`` and ``b``."""
        va = np.asarray(self.item_vectors[a], dtype=np.float32) * self._mask / self._sim_norms[a, None]
        vb = np.asarray(self.item_vectors[b], dtype=np.float32) * self._mask / self._sim_norms[b, None]
        return va @ vb.T

    @property
    def _ann(self):
        """The hnswlib graph once built, else None."""
        return None if self.ann_box is None else self.ann_box[0]

    @property
    def uses_ann(self) -> bool:
        return self._ann is not None

    def _build_ann(self, box: list) -> None:
        """Build an hnswlib inner-product graph of the trained items and switch searches to it.

        hnswlib releases the GIL while it adds items, so requests keep being served (exactly)
        meanwhile; the cost is one busy core for seconds (100k x 64: ~6 s, ~39 MB).
        """
        try:
            import hnswlib
        except ImportError:  # optional: the exact search works, only slower on big catalogs
            return
        n = self.n_trained
        ann = hnswlib.Index(space="ip", dim=self.dim)
        ann.init_index(max_elements=n, ef_construction=100, M=16, random_seed=0)
        ann.add_items(np.asarray(self.item_vectors[:n], dtype=np.float32), np.arange(n), num_threads=1)
        ann.set_ef(ANN_EF)
        box[0] = ann  # one reference swap, seen by every index sharing the box
