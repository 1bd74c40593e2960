"""Offline metrics of EVALUATION.md, vectorised over ``(n_users, k)`` arrays of item ids.

Every function takes ``ids``: (n_users, k) int item indices, best first, ``-1`` for padding
(padding is never a hit, never tail, never counted as a recommended item). ``truth`` is a
list of n_users int arrays (the new-to-user items of each test user, as in
:class:`~recommender.ml.protocol.Split`), or a scipy CSR matrix with one row per user.

Definitions (K = 10 and 20):

- Recall@K: hits in the top K / min(K, |truth|), averaged over users.
- NDCG@K: binary relevance, DCG = sum over hits at rank r (0-based) of 1/log2(r + 2); the
  ideal DCG puts min(K, |truth|) hits first.
- HR@K: share of users with at least one hit in the top K.
- APLT@10: per list, the share of its (non-padded) top 10 that is tail; averaged over users.
- TailRecall@20: Recall@20 with the truth restricted to tail items (hits on tail truth /
  min(20, |tail truth|)), averaged over users who have any tail truth.
- Coverage@10: distinct items in all top-10 lists / number of candidate items.
- Gini@10: Gini index of the number of top-10 lists each candidate item appears in
  (items never recommended count as 0): 0 = perfectly even, -> 1 = all on one item.
- ARP@10: per list, the mean training popularity (distinct training users) of its items;
  averaged over users.
- ColdHit@20: ground-truth (user, cold item) pairs hit in the top 20 / all such pairs.

Metrics without any eligible user or pair (e.g. ColdHit without cold truth) are NaN.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

KS = (10, 20)
METRIC_NAMES = (
    "Recall@10",
    "Recall@20",
    "NDCG@10",
    "NDCG@20",
    "HR@10",
    "HR@20",
    "APLT@10",
    "TailRecall@20",
    "Coverage@10",
    "Gini@10",
    "ARP@10",
    "ColdHit@20",
)


def _truth_lists(truth) -> list[np.ndarray]:
    if hasattr(truth, "indptr"):  # scipy CSR, one row per user
        return [truth.indices[truth.indptr[i] : truth.indptr[i + 1]] for i in range(truth.shape[0])]
    return [np.asarray(t, dtype=np.int64) for t in truth]


def _truth_keys(truth_lists: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """Sorted unique int64 keys ``row * n_items + item`` of every truth pair."""
    lens = np.fromiter((len(t) for t in truth_lists), dtype=np.int64, count=len(truth_lists))
    if lens.sum() == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(len(truth_lists), dtype=np.int64), lens)
    items = np.concatenate([np.asarray(t, dtype=np.int64) for t in truth_lists])
    return np.unique(rows * n_items + items)


def _n_items(ids: np.ndarray, truth_lists: Sequence[np.ndarray]) -> int:
    m = int(ids.max(initial=-1))
    for t in truth_lists:
        if len(t):
            m = max(m, int(np.max(t)))
    return m + 1


def hit_matrix(ids: np.ndarray, truth) -> np.ndarray:
    """(n_users, k) bool: ``ids[u, r]`` is in user u's truth.

    Parameters
    ----------
    ids : (n_users, k) int, ``-1`` for padding
    truth : list of n_users int arrays, or CSR (n_users, n_items)
    """
    ids = np.asarray(ids)
    tl = _truth_lists(truth)
    if len(tl) != ids.shape[0]:
        raise ValueError(f"ids has {ids.shape[0]} rows but truth has {len(tl)} users")
    n_items = _n_items(ids, tl)
    keys = _truth_keys(tl, n_items)
    rec = np.arange(ids.shape[0], dtype=np.int64)[:, None] * n_items + ids.astype(np.int64)
    if len(keys) == 0:
        return np.zeros(ids.shape, dtype=bool)
    pos = np.clip(np.searchsorted(keys, rec), 0, len(keys) - 1)
    return (keys[pos] == rec) & (ids >= 0)


def _sizes(truth) -> np.ndarray:
    return np.fromiter((len(t) for t in _truth_lists(truth)), dtype=np.int64)


def recall_at_k(hits: np.ndarray, n_truth: np.ndarray, k: int) -> float:
    """Mean over users with truth of hits@k / min(k, |truth|).

    Parameters
    ----------
    hits : (n_users, >= k) bool from :func:`hit_matrix`
    n_truth : (n_users,) int sizes of the truth sets
    """
    ok = n_truth > 0
    if not ok.any():
        return float("nan")
    h = hits[ok, :k].sum(axis=1)
    return float(np.mean(h / np.minimum(k, n_truth[ok])))


def ndcg_at_k(hits: np.ndarray, n_truth: np.ndarray, k: int) -> float:
    """Mean over users with truth of DCG@k / ideal DCG@k (binary relevance)."""
    ok = n_truth > 0
    if not ok.any():
        return float("nan")
    kk = min(k, hits.shape[1])
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[ok, :kk] * disc[:kk]).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(k, n_truth[ok])]
    return float(np.mean(dcg / ideal))


def hit_rate_at_k(hits: np.ndarray, n_truth: np.ndarray, k: int) -> float:
    """Share of users with truth that have at least one hit in the top k."""
    ok = n_truth > 0
    if not ok.any():
        return float("nan")
    return float(np.mean(hits[ok, :k].any(axis=1)))


def aplt_at_k(ids: np.ndarray, tail: np.ndarray, k: int = 10) -> float:
    """Mean share of each (non-padded) top-k list that is tail.

    Parameters
    ----------
    ids : (n_users, >= k) int
    tail : (n_items,) bool
    """
    top = np.asarray(ids)[:, :k]
    valid = top >= 0
    is_tail = tail[np.where(valid, top, 0)] & valid
    n = valid.sum(axis=1)
    share = np.divide(is_tail.sum(axis=1), n, out=np.zeros(len(n), dtype=np.float64), where=n > 0)
    return float(np.mean(share)) if len(share) else float("nan")


def tail_recall_at_k(ids: np.ndarray, truth, tail: np.ndarray, k: int = 20) -> float:
    """Recall@k over ground-truth tail items only, averaged over users who have any."""
    tl = [np.asarray(t)[tail[np.asarray(t, dtype=np.int64)]] for t in _truth_lists(truth)]
    hits = hit_matrix(np.asarray(ids)[:, :k], tl)
    return recall_at_k(hits, _sizes(tl), k)


def coverage_at_k(ids: np.ndarray, candidates: np.ndarray, k: int = 10) -> float:
    """Distinct items in all top-k lists / number of candidate items."""
    top = np.asarray(ids)[:, :k]
    rec = np.unique(top[top >= 0])
    return float(len(rec) / len(candidates)) if len(candidates) else float("nan")


def gini_at_k(ids: np.ndarray, candidates: np.ndarray, k: int = 10) -> float:
    """Gini index of how often each candidate item appears across all top-k lists.

    ``G = sum_i (2i - n - 1) x_(i) / (n * sum x)`` over counts ``x`` sorted ascending,
    ``i = 1..n``, n = number of candidates (never-recommended candidates count 0).
    """
    cands = np.asarray(candidates, dtype=np.int64)
    n = len(cands)
    if n == 0:
        return float("nan")
    top = np.asarray(ids)[:, :k]
    top = top[top >= 0].astype(np.int64)
    size = int(max(cands.max(initial=-1), top.max(initial=-1))) + 1
    counts = np.bincount(top, minlength=size)[cands].astype(np.float64)
    total = counts.sum()
    if total == 0:
        return float("nan")
    x = np.sort(counts)
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * x) / (n * total))


def arp_at_k(ids: np.ndarray, popularity: np.ndarray, k: int = 10) -> float:
    """Mean over lists of the mean training popularity of their (non-padded) top-k items."""
    top = np.asarray(ids)[:, :k]
    valid = top >= 0
    pop = np.where(valid, popularity[np.where(valid, top, 0)], 0).astype(np.float64)
    n = valid.sum(axis=1)
    per = np.divide(pop.sum(axis=1), n, out=np.zeros(len(n)), where=n > 0)
    ok = n > 0
    return float(np.mean(per[ok])) if ok.any() else float("nan")


def cold_hit_at_k(ids: np.ndarray, truth, cold: np.ndarray, k: int = 20) -> float:
    """Ground-truth pairs on cold items hit in the top k / all ground-truth cold pairs."""
    tl = [np.asarray(t)[cold[np.asarray(t, dtype=np.int64)]] for t in _truth_lists(truth)]
    n_pairs = int(sum(len(t) for t in tl))
    if n_pairs == 0:
        return float("nan")
    hits = hit_matrix(np.asarray(ids)[:, :k], tl)
    return float(hits.sum() / n_pairs)


def evaluate_lists(
    ids: np.ndarray,
    truth,
    *,
    candidates: np.ndarray,
    tail: np.ndarray,
    cold: np.ndarray,
    popularity: np.ndarray,
) -> dict[str, float]:
    """All metrics of :data:`METRIC_NAMES` for one set of lists.

    Parameters
    ----------
    ids : (n_users, >= 20) int item indices, best first, -1 padding
    truth : list of n_users int arrays (or CSR), the users' new-to-user items
    candidates : (m,) int candidate items
    tail, cold : (n_items,) bool
    popularity : (n_items,) distinct training users per item

    Returns
    -------
    dict metric name -> float (NaN where undefined)
    """
    ids = np.asarray(ids)
    if ids.shape[1] < max(KS):
        raise ValueError(f"need at least {max(KS)} recommendations per user, got {ids.shape[1]}")
    tl = _truth_lists(truth)
    hits = hit_matrix(ids, tl)
    n_truth = _sizes(tl)
    out: dict[str, float] = {}
    for k in KS:
        out[f"Recall@{k}"] = recall_at_k(hits, n_truth, k)
    for k in KS:
        out[f"NDCG@{k}"] = ndcg_at_k(hits, n_truth, k)
    for k in KS:
        out[f"HR@{k}"] = hit_rate_at_k(hits, n_truth, k)
    out["APLT@10"] = aplt_at_k(ids, tail, 10)
    out["TailRecall@20"] = tail_recall_at_k(ids, tl, tail, 20)
    out["Coverage@10"] = coverage_at_k(ids, candidates, 10)
    out["Gini@10"] = gini_at_k(ids, candidates, 10)
    out["ARP@10"] = arp_at_k(ids, popularity, 10)
    out["ColdHit@20"] = cold_hit_at_k(ids, tl, cold, 20)
    return out


def evaluate_split(ids: np.ndarray, split) -> dict[str, float]:
    """:func:`evaluate_lists` with the truth, candidates, tail, cold and popularity of a Split."""
    return evaluate_lists(
        ids,
        split.truth,
        candidates=split.candidates,
        tail=split.tail,
        cold=split.cold,
        popularity=split.popularity,
    )
