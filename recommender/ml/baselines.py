"""Peer models of the offline evaluation, all behind the :class:`~recommender.ml.base.Recommender` interface.

MostPopular, RecentPop, ItemKNN, EASE, ALS and BPR (``implicit``, CPU), ContentOnly (text
embeddings) and a PopularityPenalisedRerank wrapper around any of them.

Shared conventions:

- Feedback is every event with a positive weight (impressions weigh 0, so they are ignored).
- Items with no training feedback (cold items) cannot be scored by collaborative models:
  they get :data:`UNSCORED`, a finite score below every real one, so they only fill lists
  when nothing else is allowed. ContentOnly scores them from their text.
- ``exclude`` and ``candidates`` are applied to the dense score matrix before the top-k
  (``-inf`` = never returned); users are scored in batches to bound memory.
- Models save to ``.npy`` arrays plus ``params.json`` (see ``Recommender.save``), never pickle.
"""
from __future__ import annotations

from abc import abstractmethod

from pathlib import Path
from typing import Any

import numpy as np

from .base import Interactions, Recommender, filter_scores, topk

#: Score of items a model knows nothing about: below every real score, but not -inf.
UNSCORED = np.float32(-1e30)
#: Users scored per dense batch in ``recommend``.
BATCH_USERS = 1024
DAY = 86_400


# --------------------------------------------------------------------------- helpers


def feedback_matrix(data: Interactions, weighting: str = "binary"):
    """(n_users, n_items) float32 CSR of positive-weight feedback.

    Parameters
    ----------
    weighting : ``"binary"`` (1 per user-item pair), ``"count"`` (number of events) or
        ``"log"`` (``log1p`` of the summed event weights)
    """
    import scipy.sparse as sp

    pos = data.weight > 0
    if weighting == "binary":
        vals = np.ones(int(pos.sum()), dtype=np.float32)
    elif weighting == "count":
        vals = np.ones(int(pos.sum()), dtype=np.float32)
    elif weighting == "log":
        vals = data.weight[pos].astype(np.float32)
    else:
        raise ValueError(f"weighting={weighting!r}; use 'binary', 'count' or 'log'")
    m = sp.csr_matrix((vals, (data.user[pos], data.item[pos])), shape=(data.n_users, data.n_items))
    m.sum_duplicates()
    if weighting == "binary":
        m.data[:] = 1.0
    elif weighting == "log":
        m.data = np.log1p(m.data)
    return m.astype(np.float32)


def known_items(data: Interactions) -> np.ndarray:
    """(n_items,) bool: item has at least one positive-weight training event."""
    known = np.zeros(data.n_items, dtype=bool)
    known[data.item[data.weight > 0]] = True
    return known


def distinct_users(data: Interactions) -> np.ndarray:
    """(n_items,) float32 number of distinct users with positive feedback per item."""
    pos = data.weight > 0
    keys = np.unique(data.user[pos].astype(np.int64) * data.n_items + data.item[pos])
    return np.bincount(keys % data.n_items, minlength=data.n_items).astype(np.float32)


class ScoringRecommender(Recommender):
    """A Recommender defined by dense score functions; recommend/similar_items come for free.

    Subclasses implement :meth:`score_users` (n, n_items) and :meth:`score_items` (n, n_items).
    """

    @abstractmethod
    def score_users(self, users: np.ndarray) -> np.ndarray:
        """(n, n_items) float scores of every item for each user index."""

    @abstractmethod
    def score_items(self, items: np.ndarray) -> np.ndarray:
        """(n, n_items) float similarity of every item to each item index."""

    def _check_fitted(self) -> None:
        if not getattr(self, "_fitted", False):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() or load() first")

    def recommend(
        self,
        users: np.ndarray,
        k: int = 10,
        *,
        exclude: list[np.ndarray] | None = None,
        candidates: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores per user, best first; see ``Recommender.recommend``."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        if exclude is not None and len(exclude) != len(users):
            raise ValueError(f"exclude has {len(exclude)} entries for {len(users)} users")
        out_ids = np.full((len(users), k), -1, dtype=np.int64)
        out_sc = np.full((len(users), k), -np.inf, dtype=np.float32)
        for s in range(0, len(users), BATCH_USERS):
            e = s + BATCH_USERS
            sc = np.array(self.score_users(users[s:e]), dtype=np.float32, copy=True)
            filter_scores(sc, None if exclude is None else exclude[s:e], candidates)
            out_ids[s:e], out_sc[s:e] = topk(sc, k)
        return out_ids, out_sc

    def similar_items(
        self, items: np.ndarray, k: int = 10, *, candidates: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` most similar items per item (never the item itself), best first."""
        self._check_fitted()
        items = np.asarray(items, dtype=np.int64)
        out_ids = np.full((len(items), k), -1, dtype=np.int64)
        out_sc = np.full((len(items), k), -np.inf, dtype=np.float32)
        for s in range(0, len(items), BATCH_USERS):
            batch = items[s : s + BATCH_USERS]
            sc = np.array(self.score_items(batch), dtype=np.float32, copy=True)
            filter_scores(sc, [np.array([i]) for i in batch], candidates)
            out_ids[s : s + len(batch)], out_sc[s : s + len(batch)] = topk(sc, k)
        return out_ids, out_sc


# --------------------------------------------------------------------------- popularity


class MostPopular(ScoringRecommender):
    """Items ranked by distinct training users (the same list for everyone)."""

    kind = "most_popular"

    def __init__(self, random_state: int | None = 0, **params: Any) -> None:
        super().__init__(random_state, **params)

    def fit(self, data: Interactions) -> "MostPopular":
        pop = distinct_users(data)
        self.scores_ = np.where(pop > 0, pop, UNSCORED).astype(np.float32)
        self._fitted = True
        return self

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.scores_, (len(users), len(self.scores_)))

    def score_items(self, items: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.scores_, (len(items), len(self.scores_)))

    def _state(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.scores_ = arrays["scores"]
        self._fitted = True


class RecentPop(MostPopular):
    """Items ranked by distinct users over the last ``window_days`` of training.

    Ties (and items not bought in the window) are broken by all-time distinct users.

    Parameters
    ----------
    window_days : length of the recent window, counted back from the last training event
    """

    kind = "recent_pop"

    def __init__(self, random_state: int | None = 0, window_days: float = 7, **params: Any) -> None:
        super().__init__(random_state, window_days=window_days, **params)
        self.window_days = window_days

    def fit(self, data: Interactions) -> "RecentPop":
        overall = distinct_users(data)
        end = int(data.timestamp.max()) if len(data.timestamp) else 0
        from .protocol import subset

        recent = distinct_users(subset(data, data.timestamp > end - self.window_days * DAY))
        score = recent + overall / (overall.max() + 1.0)
        self.scores_ = np.where(overall > 0, score, UNSCORED).astype(np.float32)
        self._fitted = True
        return self


# --------------------------------------------------------------------------- neighbourhoods


class ItemKNN(ScoringRecommender):
    """Item-based kNN: cosine similarity on the binary user-item matrix, top-N neighbours.

    ``score(u, j) = sum_{i in I_u} s(i, j)``, where row i of ``S`` keeps the ``neighbours``
    largest similarities of item i (the diagonal is zero).

    Parameters
    ----------
    neighbours : neighbours kept per item
    shrink : cosine shrinkage, ``s = c_ij / (|i| |j| + shrink)``
    """

    kind = "item_knn"

    def __init__(
        self, random_state: int | None = 0, neighbours: int = 100, shrink: float = 0.0, **params: Any
    ) -> None:
        super().__init__(random_state, neighbours=neighbours, shrink=shrink, **params)
        self.neighbours = int(neighbours)
        self.shrink = float(shrink)

    def fit(self, data: Interactions) -> "ItemKNN":
        import scipy.sparse as sp

        x = feedback_matrix(data, "binary").tocsc()
        n = data.n_items
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel()).astype(np.float32)
        xt = x.T.tocsr()
        k = min(self.neighbours, max(n - 1, 1))
        rows, cols, vals = [], [], []
        block = max(1, min(1024, 50_000_000 // max(n, 1)))
        for s in range(0, n, block):
            e = min(n, s + block)
            c = np.asarray((xt[s:e] @ x).todense(), dtype=np.float32)  # (b, n) co-occurrence
            denom = norms[s:e, None] * norms[None, :] + self.shrink
            sim = np.divide(c, denom, out=np.zeros_like(c), where=denom > 0)
            sim[np.arange(e - s), np.arange(s, e)] = 0.0
            idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            v = np.take_along_axis(sim, idx, axis=1)
            keep = v > 0
            rows.append(np.repeat(np.arange(s, e), k)[keep.ravel()])
            cols.append(idx[keep])
            vals.append(v[keep])
        self.sim_ = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        ).astype(np.float32)
        self.user_items_ = feedback_matrix(data, "binary")
        self.known_ = known_items(data)
        self._fitted = True
        return self

    def score_users(self, users: np.ndarray) -> np.ndarray:
        sc = np.asarray((self.user_items_[users] @ self.sim_).todense(), dtype=np.float32)
        sc[:, ~self.known_] = UNSCORED
        return sc

    def score_items(self, items: np.ndarray) -> np.ndarray:
        sc = np.asarray(self.sim_[items].todense(), dtype=np.float32)
        sc[:, ~self.known_] = UNSCORED
        return sc

    def _state(self) -> dict[str, np.ndarray]:
        return _csr_state("sim", self.sim_) | _csr_state("ui", self.user_items_) | {"known": self.known_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.sim_ = _csr_from_state("sim", arrays)
        self.user_items_ = _csr_from_state("ui", arrays)
        self.known_ = arrays["known"].astype(bool)
        self._fitted = True


def _spd_inverse(g: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix via Cholesky (about 3x faster than inv)."""
    from scipy.linalg import lapack

    c, info = lapack.dpotrf(g, lower=False, clean=False)
    if info == 0:
        p, info = lapack.dpotri(c, lower=False)
        if info == 0:
            upper = np.triu(p)
            return upper + np.triu(upper, 1).T
    return np.linalg.inv(g)  # not numerically SPD: fall back to LU


def _csr_state(prefix: str, m) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_data": m.data,
        f"{prefix}_indices": m.indices,
        f"{prefix}_indptr": m.indptr,
        f"{prefix}_shape": np.asarray(m.shape, dtype=np.int64),
    }


def _csr_from_state(prefix: str, arrays: dict[str, np.ndarray]):
    import scipy.sparse as sp

    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]),
        shape=tuple(int(s) for s in arrays[f"{prefix}_shape"]),
    )


class EASE(ScoringRecommender):
    """EASE^R (Steck 2019): closed-form item-item ridge regression with a zero diagonal.

    ``B = I - P diagMat(1 / diag(P))`` with ``P = (X^T X + l2 I)^-1`` over the items that have
    training feedback (the dense (n_known, n_known) matrix bounds the catalog to ~30k items).

    Parameters
    ----------
    l2 : L2 regularisation strength (lambda)
    """

    kind = "ease"
    MAX_ITEMS = 30_000

    def __init__(self, random_state: int | None = 0, l2: float = 500.0, **params: Any) -> None:
        super().__init__(random_state, l2=l2, **params)
        self.l2 = float(l2)

    def fit(self, data: Interactions) -> "EASE":
        x = feedback_matrix(data, "binary")
        known = known_items(data)
        idx = np.flatnonzero(known)
        if len(idx) > self.MAX_ITEMS:
            raise ValueError(
                f"EASE needs a dense {len(idx)}x{len(idx)} matrix; more than {self.MAX_ITEMS} items. "
                "Filter the catalog to the most popular items first."
            )
        xk = x[:, idx]
        g = np.asarray((xk.T @ xk).todense(), dtype=np.float64)
        g[np.diag_indices_from(g)] += self.l2
        p = _spd_inverse(g)
        b = p / (-np.diag(p))
        b[np.diag_indices_from(b)] = 0.0
        self.items_ = idx.astype(np.int64)
        self.b_ = b.astype(np.float32)
        self.user_items_ = x
        self.n_items_ = data.n_items
        self._fitted = True
        return self

    def _expand(self, sc_known: np.ndarray) -> np.ndarray:
        out = np.full((sc_known.shape[0], self.n_items_), UNSCORED, dtype=np.float32)
        out[:, self.items_] = sc_known
        return out

    def score_users(self, users: np.ndarray) -> np.ndarray:
        xu = self.user_items_[users][:, self.items_]
        return self._expand(np.asarray(xu @ self.b_, dtype=np.float32))

    def score_items(self, items: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.items_, items)
        ok = (pos < len(self.items_)) & (self.items_[np.minimum(pos, len(self.items_) - 1)] == items)
        sc = np.zeros((len(items), len(self.items_)), dtype=np.float32)
        sc[ok] = self.b_[pos[ok]]
        return self._expand(sc)

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "items": self.items_,
            "b": self.b_,
            "n_items": np.asarray(self.n_items_, dtype=np.int64),
        } | _csr_state("ui", self.user_items_)

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.items_ = arrays["items"]
        self.b_ = arrays["b"]
        self.n_items_ = int(arrays["n_items"])
        self.user_items_ = _csr_from_state("ui", arrays)
        self._fitted = True


# --------------------------------------------------------------------------- matrix factorisation


class _FactorModel(ScoringRecommender):
    """Scores are ``user_factors @ item_factors.T``; cold items get UNSCORED."""

    def score_users(self, users: np.ndarray) -> np.ndarray:
        sc = self.user_factors_[users] @ self.item_factors_.T
        sc[:, ~self.known_] = UNSCORED
        return sc

    def score_items(self, items: np.ndarray) -> np.ndarray:
        v = self.item_factors_
        norm = np.linalg.norm(v, axis=1)
        vn = np.divide(v, norm[:, None], out=np.zeros_like(v), where=norm[:, None] > 0)
        sc = vn[items] @ vn.T
        sc[:, ~self.known_] = UNSCORED
        return sc

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_, "known": self.known_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors_ = arrays["user_factors"].astype(np.float32)
        self.item_factors_ = arrays["item_factors"].astype(np.float32)
        self.known_ = arrays["known"].astype(bool)
        self._fitted = True


def _implicit_threads() -> int:
    # One thread keeps runs reproducible and polite on shared machines.
    return 1


class ALS(_FactorModel):
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008) from the ``implicit`` package, CPU.

    Parameters
    ----------
    factors, regularization, alpha, iterations : as in ``implicit.cpu.als``
    weighting : feedback matrix before ``alpha`` scaling (see :func:`feedback_matrix`)
    """

    kind = "als"

    def __init__(
        self,
        random_state: int | None = 0,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 10.0,
        iterations: int = 15,
        weighting: str = "binary",
        **params: Any,
    ) -> None:
        super().__init__(
            random_state,
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            weighting=weighting,
            **params,
        )
        self.factors, self.regularization = int(factors), float(regularization)
        self.alpha, self.iterations, self.weighting = float(alpha), int(iterations), weighting

    def fit(self, data: Interactions) -> "ALS":
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            num_threads=_implicit_threads(),
            random_state=self.random_state,
        )
        model.fit(feedback_matrix(data, self.weighting), show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        self.known_ = known_items(data)
        self._fitted = True
        return self


class BPR(_FactorModel):
    """Bayesian Personalised Ranking (Rendle et al. 2009) from the ``implicit`` package, CPU.

    ``implicit`` appends an item-bias column to the factors (user side constant 1), so the
    plain dot product includes the bias.
    """

    kind = "bpr"

    def __init__(
        self,
        random_state: int | None = 0,
        factors: int = 64,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        **params: Any,
    ) -> None:
        super().__init__(
            random_state,
            factors=factors,
            learning_rate=learning_rate,
            regularization=regularization,
            iterations=iterations,
            **params,
        )
        self.factors, self.learning_rate = int(factors), float(learning_rate)
        self.regularization, self.iterations = float(regularization), int(iterations)

    def fit(self, data: Interactions) -> "BPR":
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        model = BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            num_threads=_implicit_threads(),
            random_state=self.random_state,
        )
        model.fit(feedback_matrix(data, "binary"), show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        self.known_ = known_items(data)
        self._fitted = True
        return self


# --------------------------------------------------------------------------- content


class ContentOnly(ScoringRecommender):
    """Cosine between an item's text embedding and the user's recency-weighted mean embedding.

    The user profile is ``sum_e w_e 2^(-(t_last(u) - t_e) / half_life) v_item(e)`` over the
    user's positive events (``w_e`` the event weight), L2-normalised. Needs
    ``data.item_text`` (n_items, d) for every item, including cold ones, which it can score.

    Parameters
    ----------
    half_life_days : age (before the user's latest event) at which an event counts half
    """

    kind = "content_only"

    def __init__(self, random_state: int | None = 0, half_life_days: float = 30.0, **params: Any) -> None:
        super().__init__(random_state, half_life_days=half_life_days, **params)
        self.half_life_days = float(half_life_days)

    def fit(self, data: Interactions) -> "ContentOnly":
        import scipy.sparse as sp

        from .text import l2_normalise

        if data.item_text is None:
            raise ValueError("ContentOnly needs Interactions.item_text (n_items, d) text embeddings")
        if len(data.item_text) != data.n_items:
            raise ValueError(f"item_text has {len(data.item_text)} rows for {data.n_items} items")
        emb = l2_normalise(data.item_text)
        pos = data.weight > 0
        u, i, t = data.user[pos], data.item[pos], data.timestamp[pos].astype(np.int64)
        last = np.full(data.n_users, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(last, u, t)
        age_days = (last[u] - t) / DAY
        w = data.weight[pos].astype(np.float64) * np.exp2(-age_days / self.half_life_days)
        m = sp.csr_matrix((w, (u, i)), shape=(data.n_users, data.n_items))
        self.user_vecs_ = l2_normalise(np.asarray(m @ emb, dtype=np.float32))
        self.item_vecs_ = emb
        self._fitted = True
        return self

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.user_vecs_[users] @ self.item_vecs_.T

    def score_items(self, items: np.ndarray) -> np.ndarray:
        return self.item_vecs_[items] @ self.item_vecs_.T

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_vecs": self.user_vecs_, "item_vecs": self.item_vecs_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_vecs_ = arrays["user_vecs"]
        self.item_vecs_ = arrays["item_vecs"]
        self._fitted = True


# --------------------------------------------------------------------------- re-ranking


class PopularityPenalisedRerank(Recommender):
    """Re-rank a base model's top ``depth``: ``score - alpha * log popularity``.

    Both terms are rescaled to [0, 1] so that ``alpha`` means the same for every base model:
    the base scores min-max per list, the penalty ``log1p(pop) / log1p(max pop)`` with pop the
    distinct training users. ``alpha = 0`` returns the base model's lists unchanged.

    Parameters
    ----------
    base : the model to re-rank (a Recommender, or a ``{"kind", "params", "random_state"}`` dict)
    alpha : penalty strength
    depth : how many of the base model's items are re-ranked
    refit_base : when False, ``fit`` only counts popularity and reuses the already fitted base
    """

    kind = "pop_penalised_rerank"

    def __init__(
        self,
        random_state: int | None = 0,
        base: Recommender | dict | None = None,
        alpha: float = 0.5,
        depth: int = 100,
        refit_base: bool = True,
        **params: Any,
    ) -> None:
        if isinstance(base, dict):
            base = model_class(base["kind"])(random_state=base.get("random_state"), **base.get("params", {}))
        if base is None:
            raise ValueError("PopularityPenalisedRerank needs a base model")
        self.base = base
        self.alpha, self.depth, self.refit_base = float(alpha), int(depth), bool(refit_base)
        spec = {"kind": base.kind, "params": base.params, "random_state": base.random_state}
        super().__init__(random_state, base=spec, alpha=alpha, depth=depth, refit_base=refit_base, **params)

    def fit(self, data: Interactions) -> "PopularityPenalisedRerank":
        if self.refit_base:
            self.base.fit(data)
        pop = distinct_users(data)
        self.penalty_ = (np.log1p(pop) / max(np.log1p(pop.max()), 1e-12)).astype(np.float32)
        self._fitted = True
        return self

    def _rerank(self, ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, depth) base lists -> (n, k) re-ranked lists; unscored items stay below scored ones."""
        valid = ids >= 0
        scored = valid & (scores > UNSCORED / 2)
        lo = np.where(scored, scores, np.inf).min(axis=1, keepdims=True)
        hi = np.where(scored, scores, -np.inf).max(axis=1, keepdims=True)
        lo = np.where(np.isfinite(lo), lo, 0.0)
        span = np.where(np.isfinite(hi) & (hi > lo), hi - lo, 1.0)
        norm = np.where(scored, (scores - lo) / span, -(self.alpha + 2.0))
        new = norm - self.alpha * self.penalty_[np.where(valid, ids, 0)]
        new = np.where(valid, new, -np.inf)
        order = np.argsort(-new, axis=1, kind="stable")[:, :k]
        out_ids = np.take_along_axis(ids, order, axis=1)
        out_sc = np.take_along_axis(new, order, axis=1).astype(np.float32)
        if out_ids.shape[1] < k:
            pad = k - out_ids.shape[1]
            out_ids = np.pad(out_ids, ((0, 0), (0, pad)), constant_values=-1)
            out_sc = np.pad(out_sc, ((0, 0), (0, pad)), constant_values=-np.inf)
        return out_ids, out_sc

    def recommend(self, users, k=10, *, exclude=None, candidates=None):
        """Base top-``depth`` re-ranked by the popularity penalty; see ``Recommender.recommend``."""
        if not getattr(self, "_fitted", False):
            raise RuntimeError("PopularityPenalisedRerank is not fitted; call fit() or load() first")
        ids, sc = self.base.recommend(users, max(k, self.depth), exclude=exclude, candidates=candidates)
        return self._rerank(ids, sc, k)

    def similar_items(self, items, k=10, *, candidates=None):
        """Base model's similar items re-ranked by the popularity penalty."""
        if not getattr(self, "_fitted", False):
            raise RuntimeError("PopularityPenalisedRerank is not fitted; call fit() or load() first")
        ids, sc = self.base.similar_items(items, max(k, self.depth), candidates=candidates)
        return self._rerank(ids, sc, k)

    def save(self, path: str | Path) -> None:
        """``params.json`` and the penalty here, the base model in ``base/``."""
        super().save(path)
        self.base.save(Path(path) / "base")

    @classmethod
    def load(cls, path: str | Path) -> "PopularityPenalisedRerank":
        import json

        path = Path(path)
        meta = json.loads((path / "params.json").read_text())
        if meta["kind"] != cls.kind:
            raise ValueError(f"{path} holds a {meta['kind']!r} model, not {cls.kind!r}")
        base_meta = json.loads((path / "base" / "params.json").read_text())
        base = model_class(base_meta["kind"]).load(path / "base")
        params = {k: v for k, v in meta["params"].items() if k != "base"}
        model = cls(random_state=meta["random_state"], base=base, **params)
        model._set_state({p.stem: np.load(p, allow_pickle=False) for p in path.glob("*.npy")})
        return model

    def _state(self) -> dict[str, np.ndarray]:
        return {"penalty": self.penalty_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.penalty_ = arrays["penalty"]
        self._fitted = True


# --------------------------------------------------------------------------- registry


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def model_class(kind: str) -> type[Recommender]:
    """The Recommender class whose ``kind`` is ``kind`` (baselines, and the main model if importable)."""
    from . import hybrid  # noqa: F401  (the main model registers itself by being imported)
    for sub in _all_subclasses(Recommender):
        if getattr(sub, "kind", None) == kind and not getattr(sub, "__abstractmethods__", None):
            return sub
    raise ValueError(f"no Recommender class with kind {kind!r}")


#: The baseline classes, for the shared contract tests and the evaluation registry.
BASELINES: tuple[type[Recommender], ...] = (
    MostPopular,
    RecentPop,
    ItemKNN,
    EASE,
    ALS,
    BPR,
    ContentOnly,
    PopularityPenalisedRerank,
)

