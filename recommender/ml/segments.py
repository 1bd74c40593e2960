"""Interest segments: K-means over shoppers' interest vectors, described for merchandisers.

* :func:`user_interest_vectors` builds a vector per user from the text embeddings of the
  items they interacted with (recency-weighted mean), when the model has no user vectors;
* :func:`fit_segments` clusters user vectors (k given, or chosen by silhouette on a sample)
  and describes every segment by its size, distinctive items, categories and title terms,
  and a short label made of its top terms;
* :class:`InterestSegments` assigns new users to the nearest centroid and saves to a folder
  of ``.npy`` and ``.json`` files (no pickle).

"Distinctive" means over-represented in the segment compared with everyone clustered: items,
categories and terms are ranked by ``p_seg * log(p_seg / p_all)`` (their term of the
Kullback-Leibler divergence of the segment from the population), which needs both a lift
above 1 and enough interactions to rank high; so a best-seller that every segment buys is
not what describes a segment. Pure numpy/scikit-learn; never imports Django.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .base import EVENT_CODES, Interactions
from .processing import to_unix

DAY = 86_400
_IMPRESSION = EVENT_CODES["impression"]
#: Letters only, two or more: numbers, sizes ("12oz", "500ml") and single letters never become terms.
TERM_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"
#: Above this many users K-means runs in mini-batches.
MINIBATCH_ABOVE = 50_000
_ASSIGN_CHUNK = 65_536


@dataclass
class Segment:
    """One interest segment, as the admin shows it.

    Attributes
    ----------
    index : segment number; segments are numbered by size, largest first
    size : users in the segment
    label : short automatic label (top title terms), editable by the merchandiser
    top_items : ``{"item", "item_id", "title", "count", "lift"}`` most distinctive items;
        ``count`` = interactions of members, ``lift`` = share among members / share overall
    top_categories : ``{"category", "count", "lift"}``
    top_terms : ``{"term", "count", "lift", "score"}`` title terms, weighted by interactions
    """

    index: int
    size: int
    label: str
    top_items: list[dict[str, Any]] = field(default_factory=list)
    top_categories: list[dict[str, Any]] = field(default_factory=list)
    top_terms: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (the fields of ``InterestSegment``)."""
        return {
            "index": self.index,
            "size": self.size,
            "label": self.label,
            "top_items": self.top_items,
            "top_categories": self.top_categories,
            "top_terms": self.top_terms,
        }


@dataclass
class InterestSegments:
    """Fitted segments: centroids, the segment of every clustered user, and descriptions.

    Attributes
    ----------
    centroids : (k, d) float32, in the space of the (L2-normalised when ``normalise``) vectors
    segments : k :class:`Segment`, ``segments[s].index == s``
    users : (n,) int64 user indices that were clustered
    labels : (n,) int64 segment of each of ``users``, -1 for all-zero vectors (not clustered)
    silhouette : mean silhouette on the sample for each k tried ({} when k was given)
    normalise : vectors are L2-normalised before clustering and assignment (cluster by
        direction, i.e. taste, not by activity)
    """

    centroids: np.ndarray
    segments: list[Segment]
    users: np.ndarray
    labels: np.ndarray
    silhouette: dict[int, float] = field(default_factory=dict)
    normalise: bool = True

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def assign(self, user_vectors: np.ndarray) -> np.ndarray:
        """Nearest centroid of each row.

        Parameters
        ----------
        user_vectors : (n_users, d) float, in the space the segments were fitted in

        Returns
        -------
        (n_users,) int64 segment index; -1 for all-zero rows (users without history)
        """
        return _nearest(self.centroids, user_vectors, self.normalise)

    def save(self, path: str | Path) -> None:
        """Write ``centroids.npy``, ``users.npy``, ``labels.npy`` and ``segments.json`` into ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "centroids.npy", np.asarray(self.centroids, dtype=np.float32), allow_pickle=False)
        np.save(path / "users.npy", np.asarray(self.users, dtype=np.int64), allow_pickle=False)
        np.save(path / "labels.npy", np.asarray(self.labels, dtype=np.int64), allow_pickle=False)
        meta = {
            "normalise": self.normalise,
            "silhouette": {str(k): v for k, v in self.silhouette.items()},
            "segments": [s.as_dict() for s in self.segments],
        }
        (path / "segments.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "InterestSegments":
        """Read what :meth:`save` wrote."""
        path = Path(path)
        meta = json.loads((path / "segments.json").read_text())
        centroids = np.load(path / "centroids.npy", allow_pickle=False)
        if len(meta["segments"]) != len(centroids):
            raise ValueError(
                f"{path}: segments.json describes {len(meta['segments'])} segments but "
                f"centroids.npy has {len(centroids)}; the folder is from two different fits."
            )
        return cls(
            centroids=centroids,
            segments=[Segment(**s) for s in meta["segments"]],
            users=np.load(path / "users.npy", allow_pickle=False),
            labels=np.load(path / "labels.npy", allow_pickle=False),
            silhouette={int(k): float(v) for k, v in meta["silhouette"].items()},
            normalise=bool(meta["normalise"]),
        )


# --------------------------------------------------------------------------- vectors


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def user_interest_vectors(
    data: Interactions,
    item_vectors: np.ndarray | None = None,
    *,
    now: datetime | float | None = None,
    half_life_days: float | None = 30.0,
) -> np.ndarray:
    """Recency-weighted mean of the vectors of the items each user interacted with.

    ``v_u = sum_e w_e 2^(-age_e / half_life) x_item(e) / sum_e w_e 2^(-age_e / half_life)`` over
    the user's events with a positive weight that are not impressions, ``w_e`` the event
    weight (see :func:`recommender.ml.processing.weight_interactions`), ``age_e`` in days
    before ``now``.

    Parameters
    ----------
    data : events with weights
    item_vectors : (n_items, d) float item vectors; default ``data.item_text``
    now : reference time for ages (aware datetime or unix seconds); default the last event
    half_life_days : age at which an event counts half; None for no decay

    Returns
    -------
    (n_users, d) float32; all-zero rows for users without such events
    """
    import scipy.sparse as sp

    x = data.item_text if item_vectors is None else item_vectors
    if x is None:
        raise ValueError("user_interest_vectors needs item_vectors or Interactions.item_text (n_items, d).")
    x = np.asarray(x, dtype=np.float32)
    if x.shape[0] != data.n_items:
        raise ValueError(f"item vectors have {x.shape[0]} rows for {data.n_items} items.")
    w = np.asarray(data.weight, dtype=np.float64)
    m = (w > 0) & (np.asarray(data.event_type) != _IMPRESSION)
    w = w[m]
    ts = np.asarray(data.timestamp, dtype=np.float64)[m]
    if half_life_days is not None and len(ts):
        if not half_life_days > 0:
            raise ValueError(f"half_life_days must be > 0 or None, got {half_life_days}.")
        end = ts.max() if now is None else to_unix(now)
        # Clipped at 0: an event after `now` counts as new, never more.
        w = w * np.exp2(-np.maximum(end - ts, 0.0) / DAY / half_life_days)
    mat = sp.csr_matrix((w, (data.user[m], data.item[m])), shape=(data.n_users, data.n_items))
    total = np.asarray(mat.sum(axis=1)).ravel()
    summed = np.asarray(mat @ x.astype(np.float64))
    out = np.divide(summed, total[:, None], out=np.zeros_like(summed), where=total[:, None] > 0)
    return out.astype(np.float32)


def _nearest(centroids: np.ndarray, vectors: np.ndarray, normalise: bool) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != centroids.shape[1]:
        raise ValueError(f"user_vectors must be (n, {centroids.shape[1]}), got shape {x.shape}.")
    empty = ~np.any(x != 0, axis=1)
    if normalise:
        x = _l2(x)
    c = np.asarray(centroids, dtype=np.float32)
    c_sq = np.einsum("ij,ij->i", c, c)
    out = np.empty(len(x), dtype=np.int64)
    # In chunks: the (n, k) distance matrix of millions of users would not fit at once.
    for lo in range(0, len(x), _ASSIGN_CHUNK):
        xb = x[lo : lo + _ASSIGN_CHUNK]
        out[lo : lo + len(xb)] = np.argmin(c_sq[None, :] - 2.0 * (xb @ c.T), axis=1)
    out[empty] = -1
    return out


# --------------------------------------------------------------------------- clustering


def _threads(n_threads: int | None):
    """Context that caps OpenMP/BLAS threads (a no-op for None)."""
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    return nullcontext() if n_threads is None else threadpool_limits(limits=int(n_threads))


def _kmeans(k: int, n: int, n_init: int, random_state: int | None):
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if n > MINIBATCH_ABOVE:
        return MiniBatchKMeans(n_clusters=k, n_init=n_init, random_state=random_state, batch_size=4096)
    return KMeans(n_clusters=k, n_init=n_init, random_state=random_state)


def choose_k(
    x: np.ndarray,
    k_range: Sequence[int] = range(2, 9),
    *,
    sample_size: int = 2000,
    n_init: int = 4,
    random_state: int | None = 0,
    n_threads: int | None = 1,
) -> tuple[int, dict[int, float]]:
    """The k of ``k_range`` with the highest mean silhouette on a random sample of rows.

    Parameters
    ----------
    x : (n, d) float32 vectors (already normalised if clustering will be)
    n_threads : OpenMP/BLAS threads for K-means (see :func:`fit_segments`)

    Returns
    -------
    best k (the smallest on ties), and ``{k: silhouette}`` for every k tried
    """
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(random_state)
    sample = x if len(x) <= sample_size else x[rng.choice(len(x), sample_size, replace=False)]
    scores: dict[int, float] = {}
    with _threads(n_threads):
        for k in sorted(set(int(k) for k in k_range)):
            if not 2 <= k < len(sample):
                continue  # silhouette needs 2 <= k <= n - 1
            labels = _kmeans(k, len(sample), n_init, random_state).fit_predict(sample)
            if len(np.unique(labels)) < 2:
                continue
            scores[k] = float(silhouette_score(sample, labels))
    if not scores:
        raise ValueError(
            f"cannot choose k from {list(k_range)} with {len(sample)} users; pass k= or cluster more users."
        )
    best = max(scores, key=lambda k: (round(scores[k], 12), -k))
    return best, scores


def fit_segments(
    user_vectors: np.ndarray,
    data: Interactions,
    *,
    users: np.ndarray | None = None,
    k: int | None = None,
    k_range: Sequence[int] = range(2, 9),
    sample_size: int = 2000,
    titles: Sequence[str] | np.ndarray | None = None,
    categories: Sequence[str] | np.ndarray | None = None,
    n_top: int = 10,
    min_count: int = 2,
    normalise: bool = True,
    n_init: int = 4,
    random_state: int | None = 0,
    n_threads: int | None = 1,
) -> InterestSegments:
    """Cluster users by interest and describe each cluster.

    Parameters
    ----------
    user_vectors : (n, d) float, e.g. a model's user vectors or :func:`user_interest_vectors`;
        all-zero rows (no history) are not clustered and get label -1
    data : events used to describe the segments (impressions ignored), same user index space
    users : (n,) int user index of each row; default ``arange(n)`` (then n must be ``data.n_users``)
    k : number of segments; None chooses it in ``k_range`` by silhouette on ``sample_size`` users
    titles, categories : (n_items,) str per item ("" when unknown), for items, terms, categories
    n_top : entries kept per list
    min_count : interactions an item, category or term needs to be listed
    normalise : L2-normalise vectors first (cluster by taste, not by activity)
    n_init : K-means restarts (explicit, so results do not depend on the sklearn version)
    random_state : seed of K-means and of the silhouette sample
    n_threads : OpenMP/BLAS threads for K-means; 1 by default because workers run one
        process per core, and OpenMP threads that spin on a busy machine make K-means tens
        of times slower; None leaves the libraries' default

    Returns
    -------
    InterestSegments, segments numbered by size (largest first)
    """
    x_all = np.asarray(user_vectors, dtype=np.float32)
    if x_all.ndim != 2:
        raise ValueError(f"user_vectors must be 2-d (n, d), got shape {x_all.shape}.")
    if users is None:
        if len(x_all) != data.n_users:
            raise ValueError(
                f"user_vectors has {len(x_all)} rows but data has {data.n_users} users; pass users=."
            )
        users = np.arange(len(x_all), dtype=np.int64)
    users = np.asarray(users, dtype=np.int64)
    if len(users) != len(x_all):
        raise ValueError(f"users has {len(users)} entries for {len(x_all)} rows of user_vectors.")
    has = np.any(x_all != 0, axis=1)
    x = _l2(x_all[has]) if normalise else x_all[has]
    n = len(x)
    silhouette: dict[int, float] = {}
    if k is None:
        k, silhouette = choose_k(
            x, k_range, sample_size=sample_size, n_init=n_init, random_state=random_state, n_threads=n_threads
        )
    if not 1 <= k <= n:
        raise ValueError(f"k={k} needs 1 <= k <= {n} (the users with a non-zero vector).")
    with _threads(n_threads):
        km = _kmeans(k, n, n_init, random_state).fit(x)
    # Labels by the same nearest-centroid rule as assign(), so assign() reproduces them.
    raw = _nearest(np.asarray(km.cluster_centers_, dtype=np.float32), x, normalise=False)
    # Number segments by size, largest first, so that the admin's order is stable.
    sizes = np.bincount(raw, minlength=k)
    rank = np.argsort(-sizes, kind="stable")
    relabel = np.empty(k, dtype=np.int64)
    relabel[rank] = np.arange(k)
    labels = np.full(len(x_all), -1, dtype=np.int64)
    labels[has] = relabel[raw]
    centroids = np.asarray(km.cluster_centers_, dtype=np.float32)[rank]

    segments = describe_segments(
        data, users[has], labels[has], k,
        titles=titles, categories=categories, n_top=n_top, min_count=min_count,
    )
    return InterestSegments(
        centroids=centroids,
        segments=segments,
        users=users,
        labels=labels,
        silhouette=silhouette,
        normalise=normalise,
    )


# --------------------------------------------------------------------------- descriptions


def _distinctive(
    counts, n_top: int, min_count: int, row_totals: np.ndarray | None = None
) -> list[list[tuple[int, int, float, float]]]:
    """Per segment, the top ``(column, count, lift, score)`` by ``p_seg * ln(p_seg / p_all)``.

    Parameters
    ----------
    counts : (k, m) scipy CSR of non-negative counts (segment x item, category or term)
    n_top : entries per segment
    min_count : entries with fewer counts are not listed
    row_totals : (k,) interactions of each segment, the denominator of the shares; default
        the row sums. Categories and terms pass the item interactions, so that "30% of the
        segment's interactions are on Mugs" also counts items without a category.

    Only entries with a lift above 1 are listed; when a segment has none (k = 1, or a
    segment that is just like everyone) its most frequent entries are listed instead.
    """
    if row_totals is None:
        row_totals = np.asarray(counts.sum(axis=1)).ravel()
    row_totals = np.asarray(row_totals, dtype=np.float64)
    col_total = np.asarray(counts.sum(axis=0)).ravel().astype(np.float64)
    grand = float(row_totals.sum())
    out = []
    for s in range(counts.shape[0]):
        row = counts.getrow(s)
        cols, vals = row.indices, row.data.astype(np.float64)
        keep = vals >= min_count
        cols, vals = cols[keep], vals[keep]
        if len(cols) == 0 or row_totals[s] == 0:
            out.append([])
            continue
        p_seg = vals / row_totals[s]
        lift = p_seg / (col_total[cols] / grand)
        score = p_seg * np.log(lift)
        # Rounding keeps float noise (a lift of 1 + 1e-16) from deciding what is distinctive.
        positive = np.round(score, 12) > 0
        if positive.any():
            order = np.flatnonzero(positive)[np.lexsort((cols[positive], -vals[positive], -score[positive]))]
        else:
            order = np.lexsort((cols, -vals))
        out.append([(int(cols[j]), int(vals[j]), float(lift[j]), float(score[j])) for j in order[:n_top]])
    return out


def _title_terms(titles: Sequence[str] | np.ndarray):
    """(n_items, n_terms) binary CSR of title terms and the term list; None when no title has one."""
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(binary=True, lowercase=True, stop_words="english", token_pattern=TERM_PATTERN)
    try:
        mat = vec.fit_transform(["" if t is None else str(t) for t in titles])
    except ValueError:  # empty vocabulary: no title has a usable word
        return None, []
    return mat.tocsr(), list(vec.get_feature_names_out())


def describe_segments(
    data: Interactions,
    users: np.ndarray,
    labels: np.ndarray,
    k: int,
    *,
    titles: Sequence[str] | np.ndarray | None = None,
    categories: Sequence[str] | np.ndarray | None = None,
    n_top: int = 10,
    min_count: int = 2,
    n_label_terms: int = 3,
) -> list[Segment]:
    """Size, distinctive items, categories and title terms, and a label for each segment.

    Parameters
    ----------
    data : events (impressions ignored); each event counts once
    users : (n,) int user indices; labels : (n,) int segment of each, in ``[0, k)``
    k : number of segments
    titles, categories : (n_items,) str per item, or None
    n_top : entries kept per list
    min_count : interactions an entry needs to be listed
    n_label_terms : terms in the automatic label

    Returns
    -------
    k segments; the label is the top terms with a lift above 1 joined by ", ", else the top
    category, else ``"segment <index>"``
    """
    import scipy.sparse as sp

    users = np.asarray(users, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    seg_of_user = np.full(data.n_users, -1, dtype=np.int64)
    seg_of_user[users] = labels
    ev_seg = seg_of_user[np.asarray(data.user, dtype=np.int64)]
    m = (ev_seg >= 0) & (np.asarray(data.event_type) != _IMPRESSION)
    counts = sp.csr_matrix(
        (np.ones(int(m.sum()), dtype=np.int64), (ev_seg[m], np.asarray(data.item)[m])),
        shape=(k, data.n_items),
    )
    counts.sum_duplicates()
    sizes = np.bincount(labels, minlength=k)
    item_ids = data.item_ids

    seg_total = np.asarray(counts.sum(axis=1)).ravel()
    top_items = _distinctive(counts, n_top, min_count)

    top_cats: list[list[tuple[int, int, float, float]]] = [[] for _ in range(k)]
    cat_names: np.ndarray = np.zeros(0, dtype=object)
    if categories is not None:
        cats = np.array(["" if c is None else str(c).strip() for c in categories], dtype=object)
        if len(cats) != data.n_items:
            raise ValueError(f"categories has {len(cats)} entries for {data.n_items} items.")
        cat_names, cat_code = np.unique(cats, return_inverse=True)
        known = cats != ""
        onehot = sp.csr_matrix(
            (np.ones(int(known.sum()), dtype=np.int64), (np.flatnonzero(known), cat_code[known])),
            shape=(data.n_items, len(cat_names)),
        )
        top_cats = _distinctive((counts @ onehot).tocsr(), n_top, min_count, seg_total)

    top_terms: list[list[tuple[int, int, float, float]]] = [[] for _ in range(k)]
    terms: list[str] = []
    if titles is not None:
        if len(titles) != data.n_items:
            raise ValueError(f"titles has {len(titles)} entries for {data.n_items} items.")
        term_mat, terms = _title_terms(titles)
        if term_mat is not None:
            # A term counts once per member interaction with an item whose title has it.
            top_terms = _distinctive((counts @ term_mat).tocsr(), n_top, min_count, seg_total)

    segments = []
    for s in range(k):
        items = [
            {
                "item": i,
                "item_id": None if item_ids is None else str(item_ids[i]),
                "title": None if titles is None else str(titles[i]),
                "count": c,
                "lift": round(lift, 4),
            }
            for i, c, lift, _ in top_items[s]
        ]
        cats_s = [
            {"category": str(cat_names[j]), "count": c, "lift": round(lift, 4)}
            for j, c, lift, _ in top_cats[s]
        ]
        terms_s = [
            {"term": terms[j], "count": c, "lift": round(lift, 4), "score": round(score, 6)}
            for j, c, lift, score in top_terms[s]
        ]
        label_terms = [t["term"] for t in terms_s if t["lift"] > 1][:n_label_terms]
        if label_terms:
            label = ", ".join(label_terms)
        elif cats_s and cats_s[0]["lift"] > 1:
            label = cats_s[0]["category"]
        else:
            label = f"segment {s}"
        segments.append(
            Segment(
                index=s,
                size=int(sizes[s]),
                label=label[:200],
                top_items=items,
                top_categories=cats_s,
                top_terms=terms_s,
            )
        )
    return segments

