"""The exposure policy: re-rank model candidates so long-tail items get fair, measured exposure.

Pure numpy; never imports Django. The Django side maps the merchandisers' admin rows to
:class:`PolicyConfig` / :class:`Promotion`, the request to :class:`RequestFilters`, and
the catalog to :class:`CatalogArrays`, then calls :func:`rerank`.

What :func:`rerank` does, in order of precedence (a later step never undoes an earlier one)

1. **Hard filters.** A candidate is dropped when its id is negative or its score is not
   finite (``ml.base.topk`` pads with ``-1`` / ``-inf``), when the user bought it, when the
   request excludes it (ids, category, price range, in stock), when it is inactive, when
   a merchandiser buried it, or when its impressions today have reached its daily cap.
   Duplicate candidates keep their best-scored row.
2. **Pins.** Eligible pinned items come first, in pin order. A pin does not need to be a
   candidate (it is the merchandiser's decision), but it must pass the hard filters;
   a pin that is also buried is buried.
3. **Policy score.** Model scores are standardised over the eligible candidates,
   ``z = (s - mean) / std`` (``std = 1`` when all are equal), so every boost is in
   *standard deviations of this list's scores* and does not depend on the model's score
   scale: multiplying the scores by a positive number or adding a constant changes
   nothing (up to rounding). ``policy score = z + tail_boost * is_tail + sum of the
   boosts of the promotions active at now`` (start inclusive, end exclusive). A boost of
   1.0 lifts an item past everything less than one standard deviation above it.
3b. **Exposure spreading** (``exposure_spreading = s`` in [0, 1]; 0 is off and changes
   nothing). It decides *which* tail items take the tail's places, never how many places
   the tail gets: among the eligible, unpinned tail candidates with no active promotion
   (the *spread set*), each gets the key
   ``policy score - s * SPREAD_PENALTY * log(1 + impressions_today) / log(1 + max)``
   (``max`` over the spread set; no penalty while none of it has been shown today)
   ``+ s * SPREAD_TEMPERATURE * g``, where ``g`` is centred Gumbel noise drawn from
   ``(seed, item)`` (none when ``seed`` is None). The spread set's policy scores are then
   handed out again in key order: the best key gets the set's best policy score, and so
   on. So the multiset of policy scores is unchanged, and with ``diversity = 0`` and no
   exploration positions the head/tail segment of every position is exactly what it
   would be without spreading (tail share and quotas unaffected); only the tail items that
   fill the tail places rotate: items shown often today give way to ones shown less
   (rotation over the day), and the noise, a Plackett–Luce draw at temperature
   ``s * SPREAD_TEMPERATURE`` standard deviations, lets different requests see different
   tail items even where their scores are equal or close. Gaps in score still count: an
   item several standard deviations ahead rarely gives way. The same seed and the same
   impressions give the same list (a retried request is answered the same).
4. **Greedy fill** of the remaining positions, one at a time:

   * *tail quota*: with ``t(p)`` the tail items among the first ``p``, position ``p``
     (0-based) is reserved for a tail item when ``t(p) < floor(min_tail_share * (p + 1))``
     and tail candidates are left (``floor`` with a 1e-9 tolerance, so 0.3 * 10 is 3);
   * *exploration*: at a position in ``exploration_positions`` the best (by policy score)
     never-shown item that the quota allows is taken, when there is one;
   * otherwise the item with the highest MMR value
     ``(1 - diversity) * policy_score - diversity * max(0, max cosine to the items placed)``
     (pins included) among those the quota allows; ties go to the higher policy score.
     With ``diversity = 0`` this is plain policy-score order. The cosine is clipped at 0
     because an opposite vector is no more "different" than an unrelated one. Both terms
     are of order 1 (policy scores are in standard deviations), so ``diversity = 0.5``
     trades one standard deviation of score for a cosine of 1.

Tail-quota guarantee. Let ``P`` be the number of pins placed and ``T`` the number of
eligible, unpinned tail candidates. For every prefix length ``p > P``::

    t(p) >= min(floor(min_tail_share * p), t(P) + min(p - P, T))

so without pins the quota ``t(p) >= floor(share * p)`` holds in every prefix until the tail
candidates run out, and from then on every one of them is already in the list (the rest
is filled with head items; the list is not shortened). Pins come before the quota: head
pins may leave a deficit, which the following positions make up one tail item each.

The list is ``k`` long, or shorter when fewer than ``k`` items are eligible.

Long-tail boost and tail share. With ``diversity = 0`` and no exploration positions,
raising ``tail_boost`` never lowers the number of tail items in any prefix of the list:
each segment keeps its own order, and a higher boost only turns head-vs-tail comparisons
towards the tail. MMR and exploration can break this for a single list.

Reasons (in this order after the candidate source's own): ``pinned`` (and nothing else
from the policy); ``tail quota`` (the position was reserved for a tail item and the best
item otherwise was head); ``exploration`` (an exploration position took this never-shown
item); ``diversity`` (MMR chose it over a higher-scored item); ``promoted`` / ``demoted``
(active promotions add up to a positive / negative boost); ``long-tail boost`` (a tail
item while ``tail_boost > 0``); ``spread across the long tail`` (a tail item holding a place
in the policy order that another item held without spreading; without MMR and exploration,
exactly the positions where the list without spreading has another item).

Cost. One stable argsort of the candidates and a few gathers, then ``k`` greedy steps of
O(n) each, plus an (n, d) matrix-vector product per step with diversity on; with diversity
below 1 the candidates that provably no step can pick are dropped first (typically two thirds
of them; the picks are the same). Spreading adds a sort of the tail candidates. Run the
serving process with one BLAS thread: the products are too small to gain from more. The greedy
steps run in C when ``_greedy.c`` is built (:data:`ACCELERATED`), on the arrays (the MMR
penalty table included) that numpy computed: the same picks as the numpy loop below, which
stays as the reference.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from .segments import EPS

try:  # the greedy fill in C (setup.py builds it when a compiler is there); numpy otherwise
    from . import _greedy
except ImportError:  # pragma: no cover - an install without a C compiler
    _greedy = None

#: Whether the greedy fill runs compiled (same picks either way; tests compare the two).
ACCELERATED = _greedy is not None

REASON_PINNED = "pinned"
REASON_PROMOTED = "promoted"
REASON_DEMOTED = "demoted"
REASON_LONG_TAIL = "long-tail boost"
REASON_TAIL_QUOTA = "tail quota"
REASON_EXPLORATION = "exploration"
REASON_DIVERSITY = "diversity"
REASON_SPREAD = "spread across the long tail"

#: Penalty, in standard deviations, of the most-shown tail candidate at ``exposure_spreading = 1``.
#: Measured offline (EVALUATION.md protocol, bench/offline_eval.py): the impressions penalty
#: buys far more coverage per point of NDCG than the noise does, so it carries the weight and
#: the noise is kept small (it still separates equal scores and requests between refreshes
#: of the impression counts).
SPREAD_PENALTY = 4.0
#: Gumbel noise scale (Plackett–Luce temperature), in standard deviations, at spreading 1.
SPREAD_TEMPERATURE = 0.2
_EULER_GAMMA = 0.5772156649015329
_MASK64 = (1 << 64) - 1

SEGMENT_HEAD = "head"
SEGMENT_TAIL = "tail"

def _aware_ts(value: datetime | None, name: str, default: float) -> float:
    if value is None:
        return default
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC); got naive {value.isoformat()}.")
    return value.timestamp()


def _ids(values: Sequence[int] | np.ndarray | None) -> np.ndarray:
    return np.asarray(values if values is not None else (), dtype=np.int64).reshape(-1)


def _sorted_ids(values: Sequence[int] | np.ndarray | None) -> np.ndarray:
    return np.unique(_ids(values))


class _IdIndex:
    """Positions of item ids in an array of distinct ids.

    One argsort of the (few hundred) candidates, then a binary search per id of each small
    set (buried, bought, caps, pins, promotions): cheaper than ``np.isin`` or searching
    every candidate in every set.
    """

    def __init__(self, items: np.ndarray) -> None:
        self.n = len(items)
        self.order = np.argsort(items, kind="stable")
        self.sorted = items[self.order]

    def has_duplicates(self) -> bool:
        return bool((self.sorted[1:] == self.sorted[:-1]).any())

    def find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices into ``ids`` that are present, their positions in ``items``)."""
        if not len(ids) or not self.n:
            return _NONE, _NONE
        pos = np.searchsorted(self.sorted, ids)
        pos[pos == self.n] = 0
        hit = np.flatnonzero(self.sorted[pos] == ids)
        return hit, self.order[pos[hit]]

    def subset(self, keep: np.ndarray) -> "_IdIndex":
        """The index of ``items[keep]`` for a (n,) bool ``keep``, without sorting again."""
        new = object.__new__(_IdIndex)
        kept = keep[self.order]
        new.order = (np.cumsum(keep) - 1)[self.order[kept]]
        new.sorted = self.sorted[kept]
        new.n = len(new.sorted)
        return new


_NONE = np.zeros(0, dtype=np.int64)
#: Up to this many candidates left for the greedy MMR fill, their pairwise penalties are
#: computed in one product (a 200 x 200 table is 40k entries); above, one row per step.
_PENALTY_TABLE_ROWS = 200
#: Category codes up to this are looked up in a dense table; larger ones by binary search.
_DENSE_CODES = 1 << 16


def _code_table(codes: np.ndarray, values: np.ndarray, fill: float | bool) -> tuple:
    """A lookup from category code to value: a dense array when codes are small."""
    if len(codes) and 0 <= codes.min() and codes.max() < _DENSE_CODES:
        table = np.full(int(codes.max()) + 1, fill, dtype=np.asarray(values).dtype)
        table[codes] = values
        return ("dense", table, fill)
    return ("sorted", codes, values, fill)


def _code_lookup(lookup: tuple, codes: np.ndarray) -> np.ndarray:
    """Values of (n,) category ``codes`` in a :func:`_code_table`; fill for unknown codes."""
    if lookup[0] == "dense":
        _, table, fill = lookup
        inside = (codes >= 0) & (codes < len(table))
        return np.where(inside, table[np.where(inside, codes, 0)], table.dtype.type(fill))
    _, keys, values, fill = lookup
    out = np.full(len(codes), fill, dtype=np.asarray(values).dtype)
    if len(keys):
        pos = np.searchsorted(keys, codes)
        pos[pos == len(keys)] = 0
        hit = keys[pos] == codes
        out[hit] = values[pos[hit]]
    return out


def _unit_rows(vec: np.ndarray) -> np.ndarray:
    """(n, d) float32 rows scaled to length 1; zero rows stay zero (similar to nothing)."""
    vec = vec.astype(np.float32, copy=False)
    norm = np.sqrt(np.einsum("ij,ij->i", vec, vec))
    return vec / np.where(norm > 0, norm, 1.0)[:, None]


@dataclass(frozen=True, eq=False)
class CatalogArrays:
    """Per-item arrays of the whole catalog, indexed by item index.

    Attributes
    ----------
    is_head : (n_items,) bool, head segment (see :func:`.segments.head_mask`)
    category : (n_items,) int, category code; -1 for none
    price : (n_items,) float, NaN when unknown (fails any price-range filter)
    in_stock : (n_items,) bool
    impressions_today : (n_items,) int, recommendation impressions since midnight UTC
    ever_shown : (n_items,) bool, has ever had a recommendation impression
    vectors : (n_items, d) float or None, item vectors for diversity (cosine; need not be
        normalised). None switches diversity off.
    is_active : (n_items,) bool or None; None means every item is active

    Arrays that already have the dtype above (bool, int64, float64) are kept, not copied,
    so the serving side may refresh ``impressions_today``, ``in_stock`` or ``is_active``
    in place between requests.
    """

    is_head: np.ndarray
    category: np.ndarray
    price: np.ndarray
    in_stock: np.ndarray
    impressions_today: np.ndarray
    ever_shown: np.ndarray
    vectors: np.ndarray | None = None
    is_active: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.is_head)
        for name, dtype in (
            ("is_head", bool),
            ("category", np.int64),
            ("price", np.float64),
            ("in_stock", bool),
            ("impressions_today", np.int64),
            ("ever_shown", bool),
            ("is_active", bool),
        ):
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.asarray(value, dtype=dtype)
            if arr.shape != (n,):
                raise ValueError(
                    f"CatalogArrays.{name} has shape {arr.shape}; every per-item array must "
                    f"have shape ({n},) like is_head."
                )
            object.__setattr__(self, name, arr)
        if self.vectors is not None:
            vec = np.asarray(self.vectors)
            if vec.ndim != 2 or vec.shape[0] != n:
                raise ValueError(f"CatalogArrays.vectors has shape {vec.shape}; expected ({n}, d).")
            object.__setattr__(self, "vectors", vec)

    @property
    def n_items(self) -> int:
        return len(self.is_head)


@dataclass(frozen=True, kw_only=True)
class Promotion:
    """A boost for one item or one category, active for ``start <= now < end``.

    ``boost`` is in standard deviations of the candidates' scores (negative demotes);
    ``start`` / ``end`` are timezone-aware, and None leaves that side open. Give exactly
    one of ``item`` (an item index) or ``category`` (a category code).
    """

    boost: float
    item: int | None = None
    category: int | None = None
    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        if (self.item is None) == (self.category is None):
            raise ValueError("A Promotion targets exactly one of item or category; give one.")
        if not math.isfinite(self.boost):
            raise ValueError(f"Promotion.boost must be a finite number, got {self.boost}.")
        start = _aware_ts(self.start, "Promotion.start", -math.inf)
        end = _aware_ts(self.end, "Promotion.end", math.inf)
        if end <= start:
            raise ValueError(
                f"Promotion ends ({self.end}) before or when it starts ({self.start}); "
                "give an end after the start."
            )

    def is_active(self, now: datetime) -> bool:
        """Whether the promotion applies at ``now`` (start inclusive, end exclusive)."""
        t = _aware_ts(now, "now", 0.0)
        return (
            _aware_ts(self.start, "start", -math.inf) <= t < _aware_ts(self.end, "end", math.inf)
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class PolicyConfig:
    """The merchandisers' exposure policy, as plain values.

    Attributes
    ----------
    tail_boost : added to the standardised score of tail items (standard deviations)
    min_tail_share : in [0, 1]; every prefix of length p holds >= floor(share * p) tail
        items while tail candidates last (see the module docstring)
    diversity : MMR strength lambda in [0, 1]; 0 is off, 1 ranks by dissimilarity alone
    exploration_positions : 0-based list positions reserved for never-shown items
    promotions : item and category boosts with time windows
    pinned : item indices placed first, in this order, when eligible
    buried : item indices never returned
    daily_impression_cap : items with ``impressions_today >= cap`` are removed; None is no cap
    item_impression_caps : per-item caps, overriding ``daily_impression_cap``
    exposure_spreading : in [0, 1]; how strongly the tail's places rotate among tail items
        (impressions today and per-request noise; see the module docstring). 0 is off.
    """

    tail_boost: float = 0.0
    min_tail_share: float = 0.0
    diversity: float = 0.0
    exploration_positions: tuple[int, ...] = ()
    promotions: tuple[Promotion, ...] = ()
    pinned: tuple[int, ...] = ()
    buried: tuple[int, ...] = ()
    daily_impression_cap: int | None = None
    item_impression_caps: Mapping[int, int] = field(default_factory=dict)
    exposure_spreading: float = 0.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.tail_boost):
            raise ValueError(f"tail_boost must be a finite number, got {self.tail_boost}.")
        if not 0.0 <= self.min_tail_share <= 1.0:
            raise ValueError(f"min_tail_share must be in [0, 1], got {self.min_tail_share}.")
        if not 0.0 <= self.diversity <= 1.0:
            raise ValueError(f"diversity (MMR lambda) must be in [0, 1], got {self.diversity}.")
        if not 0.0 <= self.exposure_spreading <= 1.0:
            raise ValueError(
                f"exposure_spreading must be in [0, 1] (0 is off), got {self.exposure_spreading}."
            )
        if any(p < 0 for p in self.exploration_positions):
            raise ValueError(
                "exploration_positions are 0-based list positions; "
                f"got {self.exploration_positions}."
            )
        caps = [self.daily_impression_cap, *self.item_impression_caps.values()]
        if any(c is not None and c < 0 for c in caps):
            raise ValueError("Impression caps must be >= 0 (0 hides the item); got a negative cap.")
        # Precomputed once per policy (policies change rarely, requests are many).
        set_ = object.__setattr__
        set_(self, "_explore", frozenset(int(p) for p in self.exploration_positions))
        explore_mask = np.zeros(max(self._explore, default=-1) + 1, dtype=bool)
        explore_mask[list(self._explore)] = True
        set_(self, "_explore_mask", explore_mask)
        set_(self, "_pinned", np.asarray(list(dict.fromkeys(self.pinned)), dtype=np.int64))
        set_(self, "_buried", _sorted_ids(self.buried))
        keys = np.asarray(sorted(self.item_impression_caps), dtype=np.int64)
        vals = np.asarray([self.item_impression_caps[int(i)] for i in keys], dtype=np.float64)
        set_(self, "_cap_items", keys)
        set_(self, "_cap_values", vals)
        promos = self.promotions
        set_(self, "_p_start", np.array([_aware_ts(p.start, "start", -np.inf) for p in promos]))
        set_(self, "_p_end", np.array([_aware_ts(p.end, "end", np.inf) for p in promos]))
        set_(self, "_p_boost", np.array([p.boost for p in promos], dtype=np.float64))
        set_(self, "_p_is_item", np.array([p.item is not None for p in promos], dtype=bool))
        targets = [p.item if p.item is not None else p.category for p in promos]
        set_(self, "_p_target", np.array(targets, dtype=np.int64))
        # Per set of active promotions: (targets, summed boosts) for items and categories.
        # Few distinct sets occur over a policy's life (at most 2 per promotion).
        set_(self, "_promo_cache", {})

    def caps_for(self, items: np.ndarray, index: _IdIndex | None = None) -> np.ndarray:
        """Daily impression cap of each item, ``inf`` where uncapped.

        Parameters
        ----------
        items : (n,) int distinct item indices
        index : the items' ``_IdIndex`` when the caller has one

        Returns
        -------
        caps : (n,) float64
        """
        default = np.inf if self.daily_impression_cap is None else float(self.daily_impression_cap)
        caps = np.full(len(items), default)
        if len(self._cap_items):
            hit, at = (index or _IdIndex(items)).find(self._cap_items)
            caps[at] = self._cap_values[hit]
        return caps

    def promotion_boost(
        self,
        items: np.ndarray,
        categories: np.ndarray,
        now: datetime,
        index: _IdIndex | None = None,
    ) -> np.ndarray:
        """Sum of the boosts of the promotions active at ``now``, per item.

        Parameters
        ----------
        items : (n,) int distinct item indices
        categories : (n,) int their category codes
        now : timezone-aware
        index : the items' ``_IdIndex`` when the caller has one

        Returns
        -------
        boost : (n,) float64
        """
        out = np.zeros(len(items))
        if not len(self._p_boost):
            return out
        t = _aware_ts(now, "now", 0.0)
        active = (self._p_start <= t) & (t < self._p_end)
        key = active.tobytes()
        tables = self._promo_cache.get(key)
        if tables is None:
            tables = []
            for is_item in (True, False):
                sel = active & (self._p_is_item == is_item)
                # Several promotions may hit one target; they add up.
                targets, inv = np.unique(self._p_target[sel], return_inverse=True)
                tables.append((targets, np.bincount(inv, weights=self._p_boost[sel])))
            tables[1] = _code_table(*tables[1], 0.0) if len(tables[1][0]) else None
            if len(self._promo_cache) > 64:
                self._promo_cache.clear()
            self._promo_cache[key] = tables
        (targets, totals), by_category = tables
        if len(targets):
            hit, at = (index or _IdIndex(items)).find(targets)
            out[at] += totals[hit]
        if by_category is not None:
            out += _code_lookup(by_category, categories)
        return out


@dataclass(frozen=True, kw_only=True, eq=False)
class RequestFilters:
    """Filters the request asks for.

    Attributes
    ----------
    categories : category codes allowed; None allows all
    min_price, max_price : inclusive bounds; None is open. Items with unknown price fail
        whenever a bound is given.
    exclude_ids : item indices never returned (e.g. the item on the page)
    in_stock_only : drop items that are out of stock
    """

    categories: tuple[int, ...] | None = None
    min_price: float | None = None
    max_price: float | None = None
    exclude_ids: Sequence[int] | np.ndarray = ()
    in_stock_only: bool = True

    def __post_init__(self) -> None:
        if self.min_price is not None and self.max_price is not None:
            if self.min_price > self.max_price:
                raise ValueError(
                    f"min_price ({self.min_price}) is above max_price ({self.max_price}); "
                    "swap them."
                )
        object.__setattr__(self, "_exclude", _sorted_ids(self.exclude_ids))
        cats = codes = None
        if self.categories is not None:
            codes = _sorted_ids(self.categories)
            cats = _code_table(codes, np.ones(len(codes), dtype=bool), False)
        object.__setattr__(self, "_categories", cats)
        object.__setattr__(self, "_category_codes", codes)  # sorted, for the compiled selection


_NO_FILTERS = RequestFilters()


@dataclass(frozen=True, eq=False)
class RankedList:
    """The re-ranked list, best first.

    Attributes
    ----------
    ids : (m,) int64 item indices, ``m <= k``
    scores : (m,) float64 the model's scores; NaN for a pinned item that was not a candidate
    policy_scores : (m,) float64 the policy scores used for ordering (see module docstring);
        NaN where ``scores`` is
    reasons : m lists of reason strings: the candidate source's first, then the policy's
        (``REASON_*`` constants)
    segments : m of ``"head"`` / ``"tail"``
    """

    ids: np.ndarray
    scores: np.ndarray
    policy_scores: np.ndarray
    reasons: list[list[str]]
    segments: list[str]

    def __len__(self) -> int:
        return len(self.ids)


def eligible_mask(
    items: np.ndarray,
    catalog: CatalogArrays,
    policy: PolicyConfig,
    request: RequestFilters = _NO_FILTERS,
    bought: np.ndarray | None = None,
    index: _IdIndex | None = None,
) -> np.ndarray:
    """Which items pass the hard filters (step 1 of :func:`rerank`).

    Parameters
    ----------
    items : (n,) int distinct item indices in ``[0, n_items)``
    catalog, policy, request : as in :func:`rerank`
    bought : (b,) int item indices the user already bought, or None
    index : the items' ``_IdIndex`` when the caller has one

    Returns
    -------
    ok : (n,) bool
    """
    index = index or _IdIndex(items)
    ok = np.ones(len(items), dtype=bool) if catalog.is_active is None else catalog.is_active[items]
    if request.in_stock_only:
        ok &= catalog.in_stock[items]
    if request._categories is not None:
        ok &= _code_lookup(request._categories, catalog.category[items])
    if request.min_price is not None or request.max_price is not None:
        price = catalog.price[items]
        # NaN compares False, so an unknown price fails either bound.
        if request.min_price is not None:
            ok &= price >= request.min_price
        if request.max_price is not None:
            ok &= price <= request.max_price
    if len(policy._cap_items):
        ok &= catalog.impressions_today[items] < policy.caps_for(items, index)
    elif policy.daily_impression_cap is not None:  # one cap for all: no per-item table to build
        ok &= catalog.impressions_today[items] < policy.daily_impression_cap
    for removed in (policy._buried, request._exclude, bought):
        if removed is not None and len(removed):
            ok[index.find(_ids(removed))[1]] = False
    return ok


def rerank(
    candidates: np.ndarray,
    scores: np.ndarray,
    catalog: CatalogArrays,
    policy: PolicyConfig,
    k: int,
    now: datetime,
    *,
    request: RequestFilters = _NO_FILTERS,
    bought: np.ndarray | None = None,
    candidate_reasons: Sequence[Sequence[str]] | None = None,
    seed: int | None = None,
) -> RankedList:
    """Apply the exposure policy to a user's candidates; see the module docstring.

    Parameters
    ----------
    candidates : (n,) int item indices from the candidate source; -1 entries are ignored
    scores : (n,) float model scores, higher is better; non-finite entries are ignored
    catalog : per-item arrays of the whole catalog
    policy : the merchandisers' exposure policy
    k : list length wanted, >= 0
    now : timezone-aware time at which promotions are evaluated
    request : filters the request asks for
    bought : (b,) int item indices the user already bought, never returned
    candidate_reasons : n sequences of reason strings from the candidate source, passed
        through to the output (e.g. "similar to an item you bought"), or None
    seed : int of the request for the spreading noise (e.g. a hash of the user and day);
        None draws no noise. Only read when ``policy.exposure_spreading > 0``.

    Returns
    -------
    RankedList
        ``min(k, eligible pins + eligible candidates)`` items, best first.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}.")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC); got a naive datetime.")
    cand = np.asarray(candidates)
    raw = np.asarray(scores, dtype=np.float64)
    if cand.ndim != 1 or cand.shape != raw.shape:
        raise ValueError(
            f"candidates {cand.shape} and scores {raw.shape} must be 1-d arrays of one length."
        )
    if candidate_reasons is not None and len(candidate_reasons) != len(cand):
        raise ValueError(
            f"candidate_reasons has {len(candidate_reasons)} entries for {len(cand)} candidates."
        )
    n_items = catalog.n_items
    if len(cand) and cand.max() >= n_items:
        raise ValueError(
            f"candidate item index {cand.max()} is outside the catalog ({n_items} items)."
        )
    pins = policy._pinned
    if len(pins) and (pins.min() < 0 or pins.max() >= n_items):
        raise ValueError(f"a pinned item index is outside the catalog ({n_items} items): {pins}.")

    # Rows best-first by model score (stable, so ties keep the source's order); a duplicate
    # item then keeps its first, i.e. best, row.
    rows, items, index = _select_rows(cand, raw, catalog, policy, request, bought)

    s = raw[rows]

    # Standardise so boosts and MMR trade-offs mean the same whatever the model's scale.
    if len(s):
        centred = s - s.mean()
        # The population standard deviation as one dot product (numpy's std is ~10 small calls).
        std = math.sqrt(float(centred @ centred) / len(s))
        z = centred / (std if std > 0 else 1.0)
    else:
        z = s
    is_tail = ~catalog.is_head[items]
    promo = policy.promotion_boost(items, catalog.category[items], now, index)
    adj = z + policy.tail_boost * is_tail + promo

    # Pins: eligible ones, in pin order; taken out of the pool.
    if len(pins):
        pins = pins[eligible_mask(pins, catalog, policy, request, bought)][:k]
    # Where each pin sits among the eligible candidates; -1 when it is not a candidate.
    hit, at = index.find(pins)
    pin_src = [-1] * len(pins)
    for h, a in zip(hit.tolist(), at.tolist()):
        pin_src[h] = a
    pin_in_pool = np.zeros(len(items), dtype=bool)
    pin_in_pool[at] = True

    # Pool: everything else, by policy score (stable: ties keep model-score order).
    keep = np.flatnonzero(~pin_in_pool)
    keep = keep[np.argsort(-adj[keep], kind="stable")]
    keep0 = keep
    if policy.exposure_spreading > 0:
        adj, keep = _spread(adj, keep, is_tail & (promo == 0), items, catalog, policy, seed)
    order = _fill(keep, adj, is_tail, items, catalog, policy, pins, k - len(pins))
    spread_at: set[int] = set()
    if keep is not keep0:
        # Spreading only trades places in the policy order among its members: a pick says so
        # when, without spreading, another item held its place in that order. Without MMR and
        # exploration that is exactly where the list without spreading differs (property-
        # tested); it costs a comparison per pick instead of a second greedy fill.
        spread_at = {p for p, (j, _) in enumerate(order) if keep[j] != keep0[j]}

    # Assemble: pins then the greedy picks. Per-position values as plain Python lists first
    # (one gather each): a numpy scalar read costs ~0.5 µs, and there are a few per position.
    n_pins = len(pins)
    flags = [(REASON_PINNED,)] * n_pins + [f for _, f in order]
    src = np.array(pin_src + keep[[j for j, _ in order]].tolist(), dtype=np.int64)
    ids = np.concatenate([pins, items[src[n_pins:]]]).astype(np.int64)
    known = src >= 0  # -1: a pin that was not a candidate
    src_l = src.tolist()
    if len(s):
        at = np.where(known, src, 0)
        out_scores = np.where(known, s[at], np.nan)
        out_policy = np.where(known, adj[at], np.nan)
        promo_l, tail_l = promo[at].tolist(), is_tail[at].tolist()
        row_l = rows[at].tolist()
    else:  # no eligible candidate: only pins that were not candidates
        out_scores, out_policy = np.full(len(ids), np.nan), np.full(len(ids), np.nan)
        promo_l, tail_l, row_l = [0.0] * len(ids), [False] * len(ids), [0] * len(ids)
    boosted = policy.tail_boost > 0
    reasons: list[list[str]] = []
    for pos, at_pos in enumerate(src_l):
        why: list[str] = []
        if at_pos >= 0 and candidate_reasons is not None:
            why.extend(candidate_reasons[row_l[pos]])
        why.extend(flags[pos])
        if at_pos >= 0 and pos >= n_pins:  # a pick, not a pin: the policy's own reasons
            if promo_l[pos] > 0:
                why.append(REASON_PROMOTED)
            elif promo_l[pos] < 0:
                why.append(REASON_DEMOTED)
            if boosted and tail_l[pos]:
                why.append(REASON_LONG_TAIL)
            if pos - n_pins in spread_at:
                why.append(REASON_SPREAD)
        reasons.append(why)
    heads = catalog.is_head[ids]
    segments = [SEGMENT_HEAD if h else SEGMENT_TAIL for h in heads.tolist()]
    return RankedList(ids, out_scores, out_policy, reasons, segments)


def _uniform(seed: int, items: np.ndarray) -> np.ndarray:
    """(n,) float64 in (0, 1), a fixed function of ``(seed, item)`` (splitmix64 finaliser).

    Keyed on the item, not its position, so a filter that drops one candidate does not
    redraw the others' noise.
    """
    mix = (int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _MASK64
    z = items.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9) + np.uint64(mix)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def _spread(
    adj: np.ndarray,
    keep: np.ndarray,
    spread_set: np.ndarray,
    items: np.ndarray,
    catalog: CatalogArrays,
    policy: PolicyConfig,
    seed: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Step 3b: the spread set's policy scores handed out again in key order.

    Parameters
    ----------
    adj : (n,) float64 policy scores of the eligible candidates
    keep : (m,) int the pool (indices into ``adj``), sorted by policy score, best first
    spread_set : (n,) bool the candidates that may rotate (unpromoted tail)
    items : (n,) int their item indices
    seed : noise seed, or None for no noise

    Returns
    -------
    adj, keep : new arrays (the inputs are not changed), or the inputs themselves when
        spreading has nothing to do. The spread set's members trade places within the
        positions of ``keep`` they held, so ``keep`` stays sorted by the new scores and
        ties with other items break exactly as before.
    """
    slots = np.flatnonzero(spread_set[keep])
    if len(slots) < 2:
        return adj, keep
    members = keep[slots]
    shown = catalog.impressions_today[items[members]]
    top = int(shown.max())
    if top == 0 and seed is None:
        return adj, keep
    strength = policy.exposure_spreading
    values = adj[members]  # best first, since keep is sorted
    key = values.copy()
    if top > 0:
        key -= strength * SPREAD_PENALTY * np.log1p(shown) / math.log1p(top)
    if seed is not None:
        gumbel = -np.log(-np.log(_uniform(seed, items[members])))
        key += strength * SPREAD_TEMPERATURE * (gumbel - _EULER_GAMMA)
    moved = members[np.argsort(-key, kind="stable")]  # equal keys keep the model's order
    new_adj = adj.copy()
    new_adj[moved] = values
    new_keep = keep.copy()
    new_keep[slots] = moved
    return new_adj, new_keep


def _select_rows(
    cand: np.ndarray,
    raw: np.ndarray,
    catalog: CatalogArrays,
    policy: PolicyConfig,
    request: RequestFilters,
    bought: np.ndarray | None,
    accelerated: bool = True,
) -> tuple[np.ndarray, np.ndarray, _IdIndex]:
    """Steps 0-1 of :func:`rerank`: the candidate rows kept, best score first (ties by row).

    Rows with no item (-1) or a non-finite score are dropped, an item listed twice keeps its
    best row, and the hard filters (:func:`eligible_mask`) drop the rest.

    Returns
    -------
    rows : (m,) int64 positions in ``cand``; items : (m,) int64 their items; their ``_IdIndex``
    """
    if accelerated and _greedy is not None:
        # The same rows from one sort and one C pass (``_greedy.select``), not ~25 numpy calls.
        out = np.empty(len(cand), dtype=np.int64)
        price_filter = request.min_price is not None or request.max_price is not None
        cats = request._category_codes
        raw = np.ascontiguousarray(raw, dtype=np.float64)
        k = _greedy.select(
            np.argsort(-raw, kind="stable"), np.ascontiguousarray(cand, dtype=np.int64), raw,
            catalog.is_active, catalog.in_stock if request.in_stock_only else None,
            catalog.impressions_today,
            math.inf if policy.daily_impression_cap is None else float(policy.daily_impression_cap),
            policy._cap_items, policy._cap_values, cats, catalog.category, catalog.price,
            price_filter,
            -math.inf if request.min_price is None else float(request.min_price),
            math.inf if request.max_price is None else float(request.max_price),
            policy._buried, request._exclude, _ids(bought), out,
        )
        rows = out[:k]
        items = cand[rows].astype(np.int64, copy=False)
        return rows, items, _IdIndex(items)
    rows = np.flatnonzero((cand >= 0) & np.isfinite(raw))
    rows = rows[np.argsort(-raw[rows], kind="stable")]
    items = cand[rows].astype(np.int64, copy=False)
    index = _IdIndex(items)
    if index.has_duplicates():  # rare: only then pay for np.unique
        _, first = np.unique(items, return_index=True)
        first.sort()
        rows, items = rows[first], items[first]
        index = _IdIndex(items)
    ok = eligible_mask(items, catalog, policy, request, bought, index)
    return rows[ok], items[ok], index.subset(ok)


def _mmr_reach(adj: np.ndarray, tail: np.ndarray, never: np.ndarray, slots: int, lam: float) -> np.ndarray:
    """Positions (ascending) of a pool sorted by policy score that a greedy MMR step could pick.

    An item's MMR value lies in ``[(1 - lam) adj - lam, (1 - lam) adj]`` (the clipped cosine
    is in [0, 1]). If ``slots`` items score more than ``lam / (1 - lam)`` above it, one of them
    is still free at each of the ``slots`` steps and beats it: it is never the free pick. The
    same holds among tail items for the steps that must place one. Exploration and the
    "first available" comparisons take the first never-shown / first items in pool order,
    which are kept. So the greedy fill over the kept rows picks exactly what it picks over all.

    Parameters
    ----------
    adj : (m,) float policy scores, non-increasing (the pool's order)
    tail, never : (m,) bool tail item, never shown
    slots : steps of the fill, 1 <= slots <= m
    lam : MMR strength, 0 < lam < 1
    """
    # A little slack for rounding (float32 cosines can exceed 1 by an ulp).
    gap = lam / (1.0 - lam) * (1.0 + 1e-5) + 1e-9
    reach = adj >= adj[slots - 1] - gap
    at = np.flatnonzero(tail)
    if len(at) > slots:
        reach[at] |= adj[at] >= adj[at[slots - 1]] - gap
    else:
        reach[at] = True
    reach[np.flatnonzero(never)[:slots]] = True
    reach[np.flatnonzero(never & tail)[:slots]] = True
    return np.flatnonzero(reach)


#: The compiled fill's reason bits (1 tail quota, 2 exploration, 4 diversity) as the reference's
#: reason tuples: the quota first, then exploration or diversity.
_WHY_BITS = tuple(
    tuple(r for bit, r in ((1, REASON_TAIL_QUOTA), (2, REASON_EXPLORATION), (4, REASON_DIVERSITY))
          if bits & bit)
    for bits in range(8)
)


def _fill_compiled(
    adj: np.ndarray,
    tail: np.ndarray,
    never: np.ndarray,
    policy: PolicyConfig,
    table: np.ndarray | None,
    pen: np.ndarray | None,
    lam: float,
    share: float,
    start: int,
    slots: int,
    tail_count: int,
) -> list[tuple[int, tuple[str, ...]]]:
    """:func:`_fill`'s loop in C (``_greedy.c``), on the arrays the numpy loop would use."""
    if table is not None:
        # The C loop reads float32 rows; numpy made them float32 (the similarity's dtype).
        table = np.ascontiguousarray(table, dtype=np.float32)
        pen = np.ascontiguousarray(pen, dtype=np.float32)
    picks = _greedy.fill(
        np.ascontiguousarray(adj, dtype=np.float64), np.ascontiguousarray(tail, dtype=bool),
        np.ascontiguousarray(never, dtype=bool), policy._explore_mask, table, pen,
        float(lam), float(share), start, slots, tail_count,
    )
    return [(j, _WHY_BITS[bits]) for j, bits in picks]


def _fill(
    keep: np.ndarray,
    adj: np.ndarray,
    is_tail: np.ndarray,
    items: np.ndarray,
    catalog: CatalogArrays,
    policy: PolicyConfig,
    pins: np.ndarray,
    slots: int,
    *,
    prune: bool = True,
    accelerated: bool = True,
) -> list[tuple[int, tuple[str, ...]]]:
    """Greedy fill of the positions after the pins (step 4 of the module docstring).

    With MMR on, the candidates no step can pick (:func:`_mmr_reach`) are left out first:
    the same picks, on a few dozen rows instead of hundreds.

    Parameters
    ----------
    keep : (m,) int indices into the eligible arrays, sorted by policy score, best first
    adj, is_tail, items : (n_eligible,) policy score, tail flag and item index
    pins : (P,) int the pinned items already placed
    slots : positions left to fill
    prune : leave out first the rows no step can pick (MMR on); the picks are the same
    accelerated : run the loop in C when the extension is built (the picks are the same;
        False runs this numpy reference, which the tests compare it with)

    Returns
    -------
    picks : (position in ``keep``, policy reason codes) per filled position, in order
    """
    m = len(keep)
    slots = min(slots, m)
    if slots <= 0:
        return []
    lam = policy.diversity if catalog.vectors is not None else 0.0
    if prune and 0 < lam < 1 and m > 2 * slots:
        reach = _mmr_reach(adj[keep], is_tail[keep], ~catalog.ever_shown[items[keep]], slots, lam)
        if len(reach) < m:
            picks = _fill(keep[reach], adj, is_tail, items, catalog, policy, pins, slots, prune=False,
                          accelerated=accelerated)
            return [(int(reach[j]), why) for j, why in picks]
    share = policy.min_tail_share
    explore = policy._explore
    tail = is_tail[keep]
    never = ~catalog.ever_shown[items[keep]]
    tail_count = int((~catalog.is_head[pins]).sum()) if len(pins) else 0
    start = len(pins)

    if lam > 0:
        unit = _unit_rows(catalog.vectors[items[keep]])
        # Similarity is clipped at 0: an opposite vector is no more "different" than an
        # unrelated one (embedding cosines below 0 carry little meaning). With nothing
        # placed yet every item has 0, so the first pick is by policy score.
        max_sim = np.zeros(m, dtype=np.float32)
        if len(pins):
            pin_sim = unit @ _unit_rows(catalog.vectors[pins]).T
            np.maximum(max_sim, pin_sim.max(axis=1), out=max_sim)
        # The MMR value is base + pen, base = (1 - lam) * adj (float64), pen = -lam * max_sim
        # (float32, as the similarity). A placed item j lowers pen to at most
        # -lam * max(0, sim(., j)): one row of a penalty table, all of it in one product when
        # the rows are few (after pruning, a few dozen: one BLAS call instead of one per step).
        pen = max_sim * -lam
        if m <= _PENALTY_TABLE_ROWS:
            table = np.maximum(unit @ unit.T, 0.0) * -lam
            penalty_row = table.__getitem__
        else:
            def penalty_row(j: int) -> np.ndarray:
                return np.maximum(unit @ unit[j], 0.0) * -lam

    if accelerated and _greedy is not None and (lam == 0 or m <= _PENALTY_TABLE_ROWS):
        return _fill_compiled(adj[keep], tail, never, policy, table if lam > 0 else None,
                              pen if lam > 0 else None, lam, share, start, slots, tail_count)

    avail = np.ones(m, dtype=bool)
    tail_left = int(tail.sum())
    # The best available item, and the best available tail item, are the first ones left in
    # ``keep`` (sorted by policy score): two cursors in plain Python, not an argmax per step.
    taken_py = [False] * m
    tail_at = np.flatnonzero(tail).tolist()
    first = first_tail = 0
    if lam > 0:
        base = (1.0 - lam) * adj[keep]  # minus inf once placed
        head_out = np.where(tail, 0.0, -np.inf)  # added when the quota wants a tail item
        mmr = base + pen

    picks: list[tuple[int, tuple[str, ...]]] = []
    for pos in range(start, start + slots):
        why: list[str] = []
        forced = tail_left > 0 and tail_count < math.floor(share * (pos + 1) + EPS)
        while taken_py[first]:
            first += 1
        if forced:
            while taken_py[tail_at[first_tail]]:
                first_tail += 1
        best = tail_at[first_tail] if forced else first  # by policy score alone
        j = -1
        if pos in explore:
            fresh = (avail & tail if forced else avail) & never
            if fresh.any():
                j = int(fresh.argmax())  # by policy score, not MMR: the slot is for learning
                why.append(REASON_EXPLORATION)
        if lam > 0:
            free = int(mmr.argmax())
            if j < 0:
                j = int((mmr + head_out).argmax()) if forced else free
                if j != best:
                    why.append(REASON_DIVERSITY)
        else:
            free = first
            if j < 0:
                j = best
        if forced and not tail[free]:
            why.insert(0, REASON_TAIL_QUOTA)
        picks.append((j, tuple(why)))
        avail[j] = False
        taken_py[j] = True
        if tail[j]:
            tail_count += 1
            tail_left -= 1
        if lam > 0 and pos + 1 < start + slots:
            base[j] = -np.inf
            np.minimum(pen, penalty_row(j), out=pen)
            np.add(base, pen, out=mmr)
    return picks
