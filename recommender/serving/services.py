"""The three recommendation services: candidates from the index, re-ranked by the exposure policy.

Each request costs a constant number of small queries (the user's recent events; the user's
interest segment only on that fallback) on top of the process's rate-limited checks; the
catalog, vectors and policy are in memory.

Candidate sources, in order of preference:

* for a user: their model vector; else a profile of their recent items in this version's
  vector space; else (fallback) popular in their interest segment; else popular overall;
* for a session: a profile of the session's items; else (fallback) popular overall;
* for an item: its nearest items by cosine; else (fallback) popular overall.

Without an active model the space is the live catalog with its text embeddings, so the
same sources work from text similarity and popularity (reported as a fallback).
"""
from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import connection
from django.utils import timezone

from ..conf import settings as rec_settings
from ..models import EventType
from ..ranking.policy import REASON_PINNED, RankedList, RequestFilters, rerank
from . import impressions
from .catalog import category_code, is_new
from .db import prepared_cursor
from .policies import PolicyRow, PolicySnapshot, Variant
from .state import Space, get_state

R_SIMILAR_BOUGHT = "similar to an item you bought"
R_SIMILAR_CART = "similar to an item in your cart"
R_SIMILAR_VIEWED = "similar to an item you viewed"
R_SIMILAR_ITEM = "similar to this item"
R_SESSION = "similar to items in your session"
R_FOR_YOU = "matches your interests"
R_SEGMENT = "popular in your interest segment"
R_POPULAR = "popular"
R_NEW = "new item"

_SIMILAR_BY_TYPE = {
    int(EventType.PURCHASE): R_SIMILAR_BOUGHT,
    int(EventType.ADD_TO_CART): R_SIMILAR_CART,
}
_EVENT_CODE = EventType.by_name()
#: A history item explains a recommendation only when at least this similar to it.
REASON_MIN_COSINE = 0.2
# Among similar enough history items, a purchase explains best, then a cart, then a view:
# the bonus of each event code, looked up by code.
_REASON_BONUS = np.zeros(max(int(t) for t in EventType) + 1)
_REASON_BONUS[int(EventType.PURCHASE)] = 0.1
_REASON_BONUS[int(EventType.ADD_TO_CART)] = 0.05


class UnknownItem(LookupError):
    """The item of a similar-items request is not in the catalog."""


@dataclass(frozen=True)
class Filters:
    """Request filters, in the shop's own terms (external ids, category names)."""

    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    exclude: tuple[str, ...] = ()
    in_stock: bool = True


@dataclass
class Recommendations:
    """A served list and what produced it."""

    request_id: str
    items: list[dict[str, Any]]
    model_version: str | None
    policy: str
    variant: str | None
    fallback: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "model_version": self.model_version,
            "policy": self.policy,
            "variant": self.variant,
            "fallback": self.fallback,
            "items": self.items,
        }


@dataclass
class _Candidates:
    ids: np.ndarray
    scores: np.ndarray
    reason: str | None
    fallback: str | None = None  # what served, when it is a fallback
    reasons: list[str] | None = None  # per candidate, overriding ``reason``


# --- public services ---------------------------------------------------------------------------

def recommend_for_user(
    user_id: str, k: int = 10, filters: Filters = Filters(), *,
    policy: PolicyRow | None = None, log_impressions: bool = True,
) -> Recommendations:
    """Personalised top-``k`` for a shopper, re-ranked by their A/B arm's exposure policy.

    ``policy`` overrides the arm (the admin's preview of an unsaved edit; give it an ``id`` no
    saved policy has, as its config is cached per id); ``log_impressions=False`` logs nothing.
    """
    space, snapshot = get_state().current()
    row, variant = (policy, None) if policy is not None else snapshot.assign(user_id)
    space = _space_for(space, variant)
    user_pk, hist_items, hist_types = _history(user_id, space)
    cands = _user_candidates(space, user_pk, hist_items, hist_types, row, _n_candidates(filters), k)
    bought = hist_items[hist_types == int(EventType.PURCHASE)] if row.exclude_purchased else None
    return _serve(
        space, snapshot, row, variant, cands, k, filters, endpoint="user", user_id=user_id,
        bought=bought, history=(hist_items, hist_types),
        no_history_reason=None if len(hist_items) else ("unknown user" if user_pk is None else "no history"),
        log_impressions=log_impressions,
    )


def similar_items(item_id: str, k: int = 10, filters: Filters = Filters()) -> Recommendations:
    """Items most similar to ``item_id`` (never itself), re-ranked by the default policy."""
    space, snapshot = get_state().current()
    row = snapshot.default
    at = space.catalog.by_external_id.get(item_id)
    if at is not None and not space.catalog.is_live[at]:
        raise UnknownItem(f"Item {item_id!r} was removed from the catalog; upsert it again to bring it back.")
    if at is None:
        if not _item_exists(item_id):
            raise UnknownItem(f"No item with id {item_id!r}; check the id or upsert the item first.")
        cands = _popular(space, row)
        cands.fallback = "item not in the model yet"
    elif not np.any(space.index.item_vectors[at]):
        cands = _popular(space, row)
        cands.fallback = "item has no vector"
    else:
        ids, scores = _search(space, space.index.item_vectors[at], _n_candidates(filters) + 1, row, k, cosine=True)
        keep = ids != at
        cands = _Candidates(ids[keep], scores[keep], R_SIMILAR_ITEM)
    exclude = np.array([at], dtype=np.int64) if at is not None else None
    return _serve(space, snapshot, row, None, cands, k, filters, endpoint="similar", exclude_idx=exclude)


def recommend_for_session(
    item_ids: Sequence[str],
    event_types: Sequence[str] | None = None,
    k: int = 10,
    filters: Filters = Filters(),
    user_id: str | None = None,
) -> Recommendations:
    """Top-``k`` for an anonymous (or not yet known) shopper's session of items, oldest first."""
    space, snapshot = get_state().current()
    row, variant = snapshot.assign(user_id)
    space = _space_for(space, variant)
    types = list(event_types) if event_types else ["view"] * len(item_ids)
    idx = np.array([space.catalog.by_external_id.get(i, -1) for i in item_ids], dtype=np.int64)
    codes = np.array([_EVENT_CODE[t] for t in types], dtype=np.int64)
    known = idx >= 0
    q = _profile(space, idx[known], codes[known])
    if q is None and user_id is not None:
        # Nothing to go on in the session: the shopper's own history, segment, then popularity.
        user_pk, hist_items, hist_types = _history(user_id, space)
        cands = _user_candidates(space, user_pk, hist_items, hist_types, row, _n_candidates(filters), k)
        cands.fallback = cands.fallback or "the shopper's history"
    elif q is None:
        cands = _popular(space, row)
        cands.fallback = "popular overall"
    else:
        ids, scores = _search(space, q, _n_candidates(filters), row, k)
        cands = _Candidates(ids, scores, R_SESSION)
    bought = idx[known & (codes == int(EventType.PURCHASE))]
    return _serve(
        space, snapshot, row, variant, cands, k, filters, endpoint="session", user_id=user_id,
        bought=bought if row.exclude_purchased else None, exclude_idx=idx[known],
        history=(idx[known], codes[known]),
        no_history_reason=None if q is not None else ("no known session items" if len(item_ids) else "empty session"),
    )


# --- candidates --------------------------------------------------------------------------------

def _n_candidates(filters: Filters | None = None) -> int:
    """Candidates to fetch: more when filters will drop many of them (a category, a price range)."""
    n = rec_settings.SERVING_CANDIDATES
    if filters is not None and (filters.category or filters.min_price is not None or filters.max_price is not None):
        n *= 5
    return n


def _space_for(space: Space, variant: Variant | None) -> Space:
    if variant is None or variant.model_version_id is None:
        return space
    return get_state().space_for(variant.model_version_id)


# The user's row (so an unknown user and one without events differ) and their latest events,
# in one round trip. LATERAL plans and runs in ~0.3 ms against ~0.45 ms for the portable form
# (PostgreSQL, a persistent connection, 1M events); SQLite has no LATERAL.
# The impression code is written into the text (not a parameter) so that the planner can
# always prove the partial index rec_event_user_history applies: an index-only scan.
_HISTORY_LATERAL = (
    "SELECT u.id, e.item_id, e.event_type FROM recommender_shopuser u LEFT JOIN LATERAL ("
    "  SELECT item_id, event_type FROM recommender_event"
    f"  WHERE user_id = u.id AND event_type <> {int(EventType.IMPRESSION)}"
    "  ORDER BY timestamp DESC LIMIT %s) e ON TRUE "
    "WHERE u.external_id = %s"
)
_HISTORY_PORTABLE = (
    "SELECT u.id, e.item_id, e.event_type FROM recommender_shopuser u "
    "LEFT JOIN (SELECT user_id, item_id, event_type, timestamp FROM recommender_event "
    "  WHERE user_id = (SELECT id FROM recommender_shopuser WHERE external_id = %s) AND event_type <> %s "
    "  ORDER BY timestamp DESC LIMIT %s) e ON e.user_id = u.id "
    "WHERE u.external_id = %s"
)


def _history(user_id: str, space: Space) -> tuple[int | None, np.ndarray, np.ndarray]:
    """(user pk or None, (m,) item indices, (m,) event codes) of the user's recent events, newest first."""
    with prepared_cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(_HISTORY_LATERAL, [rec_settings.SERVING_HISTORY_EVENTS, user_id])
        else:
            cur.execute(
                _HISTORY_PORTABLE, [user_id, int(EventType.IMPRESSION), rec_settings.SERVING_HISTORY_EVENTS, user_id]
            )
        rows = cur.fetchall()
    if not rows:
        return None, np.zeros(0, np.int64), np.zeros(0, np.int64)
    user_pk = int(rows[0][0])
    if rows[0][1] is None:  # the LEFT JOIN's one empty row of a user without events
        return user_pk, np.zeros(0, np.int64), np.zeros(0, np.int64)
    n = len(rows)
    idx = space.index.item_index(np.fromiter((r[1] for r in rows), dtype=np.int64, count=n))
    codes = np.fromiter((r[2] for r in rows), dtype=np.int64, count=n)
    keep = idx >= 0  # items the space does not know (newer, not yet placed) cannot be scored
    return user_pk, idx[keep], codes[keep]


def _profile(space: Space, idx: np.ndarray, codes: np.ndarray) -> np.ndarray | None:
    """(d,) query vector from items (oldest first), weighted by event type and recency."""
    if not len(idx):
        return None
    weights_by_name = rec_settings.EVENT_WEIGHTS
    w = np.array([weights_by_name.get(EventType(int(c)).label, 1.0) for c in codes.tolist()], dtype=np.float32)
    w *= 0.9 ** np.arange(len(idx) - 1, -1, -1, dtype=np.float32)  # later items weigh more
    if not w.any():
        return None
    return space.index.profile(idx, w)


def _search(
    space: Space, q: np.ndarray, n: int, row: PolicyRow, k: int, *, cosine: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The index's top ``n`` for ``q``, with tail back-up when the policy's tail quota needs it."""
    need = math.ceil(row.min_tail_share * k - 1e-9)
    if need <= 0:
        return space.index.search(q, n, cosine=cosine)
    tail = space.catalog.tail(row.head_share, row.head_window_days)
    # Twice the quota: filters and caps remove some of them.
    return space.index.search(q, n, cosine=cosine, tail=tail, min_tail=2 * need, n_tail=max(n // 2, 2 * need))


def _user_candidates(
    space: Space, user_pk: int | None, items: np.ndarray, codes: np.ndarray, row: PolicyRow, n: int, k: int
) -> _Candidates:
    q = space.index.user_vector(user_pk) if len(items) else None
    if q is None:
        # History arrives newest first; the profile wants oldest first.
        q = _profile(space, items[::-1], codes[::-1])
    if q is not None:
        ids, scores = _search(space, q, n, row, k)
        return _Candidates(ids, scores, None)
    if space.segments and user_pk is not None:
        segment = _user_segment(user_pk, space)
        top = space.segments.get(segment) if segment is not None else None
        if top is not None and len(top):
            popular = _popular(space, row)
            # The segment's items first, then popular ones to fill the list.
            ids = np.concatenate([top, popular.ids])
            scores = np.concatenate([np.linspace(2.0, 1.0, len(top)) + popular.scores.max(initial=0), popular.scores])
            reasons = [R_SEGMENT] * len(top) + [R_POPULAR] * len(popular.ids)
            return _Candidates(ids, scores, None, fallback="popular in your interest segment", reasons=reasons)
    cands = _popular(space, row)
    cands.fallback = "popular overall"
    return cands


def _user_segment(user_pk: int, space: Space) -> int | None:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT segment FROM recommender_usersegment WHERE user_id = %s AND model_version_id = %s",
            [user_pk, space.version_id],
        )
        found = cur.fetchone()
    return None if found is None else int(found[0])


def _popular(space: Space, row: PolicyRow) -> _Candidates:
    """Most interacted items over the policy's head window, plus the best of the tail."""
    n = _n_candidates()
    catalog = space.catalog
    head = catalog.head(row.head_share, row.head_window_days)
    top, top_s = catalog.popular(row.head_window_days, n)
    tail, tail_s = catalog.popular(row.head_window_days, n // 2, head)
    return _Candidates(np.concatenate([top, tail]), np.concatenate([top_s, tail_s]), R_POPULAR)


def _item_exists(item_id: str) -> bool:
    from ..models import Item

    return Item.objects.live().filter(external_id=item_id).exists()


# --- re-ranking and the response ---------------------------------------------------------------

#: The filters of a request that asks for none (most do): made once, not per request.
_NO_FILTERS = Filters()
_IN_STOCK_ONLY = RequestFilters(in_stock_only=True)


def _request_filters(space: Space, filters: Filters, exclude_idx: np.ndarray | None) -> RequestFilters:
    if filters == _NO_FILTERS and (exclude_idx is None or not len(exclude_idx)):
        return _IN_STOCK_ONLY
    catalog = space.catalog
    code = category_code(catalog, filters.category)
    excluded = [catalog.by_external_id.get(e, -1) for e in filters.exclude]
    ex = np.array([e for e in excluded if e >= 0], dtype=np.int64)
    if exclude_idx is not None and len(exclude_idx):
        ex = np.concatenate([ex, exclude_idx])
    return RequestFilters(
        categories=None if code is None else (code,),
        min_price=filters.min_price,
        max_price=filters.max_price,
        exclude_ids=ex,
        in_stock_only=filters.in_stock,
    )


def _history_reasons(space: Space, ids: np.ndarray, history: tuple[np.ndarray, np.ndarray]) -> list[str | None]:
    """For each listed item, the history item it is most similar to, as a reason (or None)."""
    items, codes = history
    if not len(items) or not len(ids):
        return [None] * len(ids)
    sim = space.index.cosine(ids, items)  # (len(ids), len(items))
    bonus = _REASON_BONUS[codes]
    best = (np.where(sim >= REASON_MIN_COSINE, sim + bonus, -np.inf)).argmax(axis=1)
    similar = (sim[np.arange(len(best)), best] >= REASON_MIN_COSINE).tolist()
    code = codes[best].tolist()
    return [_SIMILAR_BY_TYPE.get(c, R_SIMILAR_VIEWED) if ok else None for ok, c in zip(similar, code)]


def spreading_seed(endpoint: str, user_id: str | None, now, request_id: str) -> int:
    """The exposure-spreading noise seed of a request: stable per shopper, endpoint and UTC day.

    So a shopper who reloads or retries sees the same tail items (until today's impressions
    move them on), while different shoppers see different ones. Anonymous requests have
    nothing stable to key on and use their request id.
    """
    key = f"{endpoint}:{user_id}:{now.date().isoformat()}" if user_id is not None else request_id
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def _serve(
    space: Space,
    snapshot: PolicySnapshot,
    row: PolicyRow,
    variant: Variant | None,
    cands: _Candidates,
    k: int,
    filters: Filters,
    *,
    endpoint: str,
    user_id: str | None = None,
    bought: np.ndarray | None = None,
    exclude_idx: np.ndarray | None = None,
    history: tuple[np.ndarray, np.ndarray] | None = None,
    no_history_reason: str | None = None,
    log_impressions: bool = True,
) -> Recommendations:
    """Re-rank the candidates by the policy, describe each item, and queue the list's impressions."""
    now = timezone.now()
    catalog = space.catalog
    policy = space.policy_config(row, snapshot.key, k)
    vectors = space.index.item_vectors if row.diversity > 0 else None
    arrays = catalog.arrays(row.head_share, row.head_window_days, vectors)
    per_cand = cands.reasons
    reasons = [[r] for r in per_cand] if per_cand else ([[cands.reason]] * len(cands.ids) if cands.reason else None)
    request_id = str(uuid.uuid4())
    ranked: RankedList = rerank(
        cands.ids, cands.scores, arrays, policy, k, now,
        request=_request_filters(space, filters, exclude_idx), bought=bought, candidate_reasons=reasons,
        seed=spreading_seed(endpoint, user_id, now, request_id) if row.exposure_spreading > 0 else None,
    )
    ids = ranked.ids
    why_history = _history_reasons(space, ids, history) if history is not None and cands.reason is None else [None] * len(ids)
    # Created lately, or newer than the model version (placed by its text alone).
    new = is_new(catalog, ids, now) | space.index.is_appended(ids)
    items = []
    personal = cands.reason is None and not per_cand
    # Plain Python values once (numpy scalars cost ~1 µs per access in this loop).
    for pos, (j, score, is_new_item) in enumerate(zip(ids.tolist(), ranked.scores.tolist(), new.tolist())):
        why = list(ranked.reasons[pos])
        if personal and REASON_PINNED not in why:
            # A personalised candidate: say which history item it resembles, when one does.
            why.insert(0, why_history[pos] or R_FOR_YOU)
        if is_new_item:
            why.append(R_NEW)
        items.append({
            "item_id": catalog.external_ids[j],
            "title": catalog.titles[j],
            "score": None if score != score else round(score, 6),  # NaN: a pinned item
            "segment": ranked.segments[pos],
            "reasons": why,
        })
    fallback = None
    if cands.fallback is not None or space.version_id is None:
        fallback = {
            "reason": no_history_reason or cands.fallback or "no trained model",
            "served": cands.fallback or "text similarity",
        }
        if space.version_id is None:
            fallback["model"] = "no trained model: popularity and text similarity"
    result = Recommendations(
        request_id=request_id,
        items=items,
        model_version=space.version_name,
        policy=row.name,
        variant=None if variant is None else variant.name,
        fallback=fallback,
    )
    if log_impressions:
        impressions.log_served(
            result, endpoint=endpoint, user_id=user_id, item_pks=catalog.pks[ids], segments=ranked.segments, now=now
        )
    return result

