"""The one small interface every model implements (after ``implicit.recommender_base``).

Arrays in, ``(ids, scores)`` out; filters are parameters; every model takes a
``random_state``; models save to a folder of ``.npy``/``.json``/``.safetensors`` files,
never pickle.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

# Event type codes, identical to recommender.models.EventType (kept here so ml/ never imports Django).
EVENT_CODES = {
    "view": 1,
    "search": 2,
    "click": 3,
    "add_to_cart": 4,
    "purchase": 5,
    "rating": 6,
    "impression": 7,
}

#: How much each event type says about a shopper's interest (the product's defaults; a shop
#: overrides them in settings.RECOMMENDER["EVENT_WEIGHTS"]). Impressions say what was shown.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "search": 0.5,
    "click": 2.0,
    "add_to_cart": 4.0,
    "purchase": 8.0,
    "rating": 3.0,
    "impression": 0.0,
}


@dataclass
class Interactions:
    """Behaviour events as parallel arrays, sorted by time.

    Attributes
    ----------
    user : (n_events,) int32, user index in ``[0, n_users)``
    item : (n_events,) int32, item index in ``[0, n_items)``
    timestamp : (n_events,) int64, unix seconds
    event_type : (n_events,) int8, codes of ``EVENT_CODES``
    weight : (n_events,) float32, interest weight of the event (type, quantity)
    n_users, n_items : sizes of the index spaces (items with no events are allowed)
    item_text : (n_items, d) float32 L2-normalised text embeddings, or None
    user_ids, item_ids : (n_users,), (n_items,) the shop's own ids, for reporting
    """

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    n_users: int
    n_items: int
    event_type: np.ndarray | None = None
    weight: np.ndarray | None = None
    item_text: np.ndarray | None = None
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.user)
        if self.event_type is None:
            self.event_type = np.full(n, EVENT_CODES["purchase"], dtype=np.int8)
        if self.weight is None:
            self.weight = np.ones(n, dtype=np.float32)
        for name in ("item", "timestamp", "event_type", "weight"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Interactions.{name} has {len(getattr(self, name))} rows, user has {n}")

    def csr(self, binary: bool = True):
        """(n_users, n_items) scipy CSR matrix of summed weights (or 1/0 when ``binary``)."""
        import scipy.sparse as sp

        data = np.ones(len(self.user), dtype=np.float32) if binary else self.weight.astype(np.float32)
        m = sp.csr_matrix((data, (self.user, self.item)), shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m


class Recommender(ABC):
    """Base class of every model; see the shared test suite in tests/unit/ml."""

    #: Short name used in artifacts and reports.
    kind: ClassVar[str] = "base"
    #: Parameters read only when recommending, never when fitting, with the values worth
    #: trying: :func:`recommender.ml.evaluate.calibrate` tries each on a fitted model's
    #: validation split (no refit) and keeps the best, unless the caller set it explicitly.
    calibration_grid: ClassVar[dict[str, tuple[Any, ...]]] = {}

    def __init__(self, random_state: int | None = 0, **params: Any) -> None:
        self.random_state = random_state
        self.params = params

    @abstractmethod
    def fit(self, data: Interactions) -> "Recommender":
        """Learn from ``data``; returns self."""

    @abstractmethod
    def recommend(
        self,
        users: np.ndarray,
        k: int = 10,
        *,
        exclude: list[np.ndarray] | None = None,
        candidates: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for each user index.

        Parameters
        ----------
        users : (n,) int user indices
        k : list length
        exclude : per user, item indices that must not be returned (e.g. already bought)
        candidates : (m,) item indices allowed; None means every item

        Returns
        -------
        ids : (n, k) int item indices, best first (-1 pads when fewer than k are allowed)
        scores : (n, k) float32, ``-inf`` where padded
        """

    @abstractmethod
    def similar_items(
        self, items: np.ndarray, k: int = 10, *, candidates: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` most similar items to each item index, never the item itself.

        Returns ``(ids, scores)`` of shape (n, k) as in :meth:`recommend`.
        """

    # --- persistence: a folder with params.json plus numpy arrays; no pickle.
    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, "random_state": self.random_state, "params": self.params}
        (path / "params.json").write_text(json.dumps(meta, indent=2, default=str))
        arrays = self._state()
        for name, arr in arrays.items():
            np.save(path / f"{name}.npy", arr, allow_pickle=False)

    @classmethod
    def load(cls, path: str | Path) -> "Recommender":
        path = Path(path)
        meta = json.loads((path / "params.json").read_text())
        if meta["kind"] != cls.kind:
            raise ValueError(f"{path} holds a {meta['kind']!r} model, not {cls.kind!r}")
        model = cls(random_state=meta["random_state"], **meta["params"])
        arrays = {p.stem: np.load(p, allow_pickle=False) for p in path.glob("*.npy")}
        model._set_state(arrays)
        return model

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """Arrays that make up the fitted model."""

    @abstractmethod
    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore the fitted model from the arrays of :meth:`_state`."""


def filter_scores(
    scores: np.ndarray,
    exclude: Sequence[np.ndarray] | None = None,
    candidates: np.ndarray | None = None,
) -> np.ndarray:
    """Set ``-inf`` (in place) on excluded items per row and on items outside ``candidates``.

    Parameters
    ----------
    scores : (n, n_items) float32, modified in place
    exclude : n arrays of item indices, one per row (a row may be None); or None
    candidates : (m,) allowed item indices (or None for all)
    """
    if candidates is not None:
        allowed = np.zeros(scores.shape[1], dtype=bool)
        allowed[np.asarray(candidates, dtype=np.int64)] = True
        scores[:, ~allowed] = -np.inf
    if exclude is not None:
        if len(exclude) != scores.shape[0]:
            raise ValueError(f"exclude has {len(exclude)} entries for {scores.shape[0]} users")
        lens = [0 if e is None else len(e) for e in exclude]
        if sum(lens):
            rows = np.repeat(np.arange(len(exclude)), lens)
            cols = np.concatenate([np.asarray(e, dtype=np.int64) for e in exclude if e is not None])
            scores[rows, cols] = -np.inf
    return scores


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of a dense (n, m) score matrix, best first; -inf entries pad with -1."""
    n, m = scores.shape
    kk = min(k, m)
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(part_scores, order, axis=1).astype(np.float32)
    ids = np.where(np.isfinite(vals), ids, -1)
    if kk < k:
        ids = np.pad(ids, ((0, 0), (0, k - kk)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return ids, vals
