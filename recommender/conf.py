"""One namespaced settings object, ``settings.RECOMMENDER``, with defaults.

Every key the app reads is listed in ``DEFAULTS``; a key that is not there is a typo and
fails loudly at start-up instead of being silently ignored.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from .ml.base import DEFAULT_EVENT_WEIGHTS, EVENT_CODES

EVENT_TYPES = tuple(EVENT_CODES)  # view, search, click, add_to_cart, purchase, rating, impression

DEFAULTS: dict[str, Any] = {
    # Where model artifacts (versioned folders of .npy/.json/.pt files) are written.
    "ARTIFACT_DIR": "var/artifacts",
    # How much each event type says about a shopper's interest in an item (training weights).
    "EVENT_WEIGHTS": dict(DEFAULT_EVENT_WEIGHTS),
    # Events that name an item the catalog does not have yet: "placeholder" creates an
    # empty item that a later catalog upsert fills in; "strict" rejects the batch.
    "UNKNOWN_ITEM_POLICY": "placeholder",
    # Largest batches accepted by the ingestion endpoints.
    "MAX_ITEM_BATCH": 5_000,
    "MAX_EVENT_BATCH": 10_000,
    # Events stamped further in the future than this are rejected (client clocks drift a little).
    "MAX_FUTURE_SKEW": timedelta(hours=1),
    # Events older than this are rejected as impossible (a unix timestamp in ms sent as s, ...).
    "MIN_EVENT_TIME": "2000-01-01T00:00:00+00:00",
    # Text embeddings: a local sentence-transformers folder (None = the packaged all-MiniLM-L6-v2;
    # name a multilingual model's folder for shops with Chinese or mixed-language titles).
    "TEXT_MODEL_PATH": None,
    "EMBED_BATCH_SIZE": 256,
    # Training: how far back the snapshot reaches, the validation window of the quality gate,
    # and how much worse than the active model a new version may be and still be activated.
    "TRAINING_WINDOW_DAYS": 365,
    "VALIDATION_DAYS": 14,
    "QUALITY_GATE_TOLERANCE": 0.05,
    "TRAINING_PARAMS": {},
    "SEGMENTS": 8,
    # Serving: how often each process checks for a newly activated model version and for
    # policy edits (one tiny query each), and rebuilds its catalog arrays (popularity, head
    # mask, stock, prices) and today's impression counts.
    "SERVING_VERSION_CHECK_SECONDS": 1.0,
    "SERVING_POLICY_CHECK_SECONDS": 2.0,
    "SERVING_CATALOG_REFRESH_SECONDS": 60.0,
    "SERVING_IMPRESSIONS_REFRESH_SECONDS": 10.0,
    # Load new versions and rebuild catalogs in a background thread (requests keep serving the
    # old ones meanwhile); False does it in the request that notices, which tests need because
    # a thread's connection cannot see a test's uncommitted rows.
    "SERVING_REFRESH_IN_BACKGROUND": True,
    # Model candidates handed to the exposure policy per request (it re-ranks them to k): the
    # depth at which bench/offline_eval.py measures the policy (evaluate.POLICY_DEPTH). Five
    # times as many with a category or price filter. 200 had cost ~0.15-0.2 ms more CPU a
    # request (the graph search and exact re-scoring of twice the rows), session 8.
    "SERVING_CANDIDATES": 100,
    # From this many n_items * dimensions on, the index searches an hnswlib graph (when
    # hnswlib is installed) instead of an exact numpy product; None searches exactly always.
    # Chosen from bench/ann_threshold.py (top-200, one thread, clustered vectors, M=16, ef=256):
    # from 4.5M cells on the graph was 3.4-22x faster at p50 (35k x 128: 0.52 -> 0.15 ms;
    # 75k x 64: 0.73 -> 0.15; 100k x 64: 0.91 -> 0.16; 200k x 128: 5.6 -> 0.25) and found
    # 0.96-0.98 of the exact top-20 (recall@200 ~0.78; a tail back-up is appended exactly on
    # both paths). Below ~3M cells the exact product is 0.15-0.45 ms and the graph saves
    # 0.03-0.3 ms for a build in every process at each version load (100k x 64: 6-8 s of one
    # core) and ~400 B per item of private memory per worker (100k x 64: 39 MB), so 4M
    # (e.g. 62k items of d=64, 31k of d=128). Serving now asks for the top 100 at ef=128
    # (index.ANN_EF), where the graph is faster still: the threshold errs on the exact side.
    "SERVING_ANN_MIN_CELLS": 4_000_000,
    # BLAS threads of a serving process (None leaves it alone): a matrix-vector product gains
    # nothing from more, and workers' BLAS threads fighting over cores wreck p99.
    "SERVING_BLAS_THREADS": 1,
    # After a process loads its first model version (and after each swap), move every object
    # alive then (Django, the app's modules, the loaded catalogs) out of the garbage
    # collector's sight (gc.freeze). A full collection otherwise walks them all: ~90k objects,
    # 90-330 ms of a frozen worker every few seconds under load (bench/serving.py
    # --worker-trace); after the freeze it walks only what requests allocated since.
    "SERVING_GC_FREEZE": True,
    # A user's most recent events read per request (their history for fallbacks and reasons).
    "SERVING_HISTORY_EVENTS": 50,
    # Run the per-request query as a prepared statement on PostgreSQL (psycopg 3 prepares it
    # after a few runs on a connection): PostgreSQL stops planning it each time, 0.34-0.42 ->
    # 0.09-0.12 ms of its CPU and 0.5-0.7 -> 0.17-0.22 ms of the round trip (measured, 1M
    # events). Set False behind a pooler that cannot keep prepared statements (PgBouncer
    # before 1.21 in transaction mode).
    "SERVING_PREPARED_STATEMENTS": True,
    # Items created this recently are tagged "new item".
    "SERVING_NEW_ITEM_DAYS": 14,
    # Items that had a recommendation impression within this many days count as "ever shown"
    # for exploration slots.
    "SERVING_SHOWN_LOOKBACK_DAYS": 90,
    # Served lists waiting to be written as impression events; beyond this they are dropped
    # (and counted) rather than slowing requests down.
    "IMPRESSION_QUEUE_SIZE": 10_000,
    "IMPRESSION_FLUSH_SECONDS": 0.5,
    # The shopper id impressions of anonymous session requests are logged under.
    "ANONYMOUS_USER_ID": "_anonymous",
    # Mixed into the hash that assigns users to A/B variants; change it to reshuffle users.
    "AB_SALT": "recommender-ab",
    # Text fields longer than these are rejected with a message naming the limit.
    "MAX_LENGTHS": {
        "item_id": 128,
        "user_id": 128,
        "event_id": 128,
        "title": 500,
        "description": 20_000,
        "category": 255,
        "brand": 255,
        "query": 500,
    },
}

_CHOICES = {"UNKNOWN_ITEM_POLICY": {"placeholder", "strict"}}


class RecommenderSettings:
    """Attribute access to ``settings.RECOMMENDER`` merged over ``DEFAULTS``."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    def _user_settings(self) -> dict[str, Any]:
        return dict(getattr(django_settings, "RECOMMENDER", {}) or {})

    def validate(self) -> None:
        user = self._user_settings()
        unknown = sorted(set(user) - set(DEFAULTS))
        if unknown:
            raise ImproperlyConfigured(
                f"Unknown RECOMMENDER setting(s): {', '.join(unknown)}. "
                f"Valid keys are: {', '.join(sorted(DEFAULTS))}."
            )
        for key, allowed in _CHOICES.items():
            if key in user and user[key] not in allowed:
                raise ImproperlyConfigured(
                    f"RECOMMENDER[{key!r}] = {user[key]!r}; use one of {sorted(allowed)}."
                )
        weights = user.get("EVENT_WEIGHTS", {})
        bad = sorted(set(weights) - set(EVENT_TYPES))
        if bad:
            raise ImproperlyConfigured(
                f"RECOMMENDER['EVENT_WEIGHTS'] names unknown event types {bad}; "
                f"event types are {list(EVENT_TYPES)}."
            )

    def _merged(self) -> dict[str, Any]:
        if self._cache is None:
            self.validate()
            merged = dict(DEFAULTS)
            user = self._user_settings()
            merged.update(user)
            # Nested dicts merge key by key so a shop can override one weight only.
            for key in ("EVENT_WEIGHTS", "MAX_LENGTHS"):
                merged[key] = {**DEFAULTS[key], **user.get(key, {})}
            self._cache = merged
        return self._cache

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._merged()[name]
        except KeyError:
            raise AttributeError(f"No RECOMMENDER setting named {name!r}") from None

    def reload(self) -> None:
        self._cache = None


settings = RecommenderSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "RECOMMENDER":
        settings.reload()


setting_changed.connect(_reload)
