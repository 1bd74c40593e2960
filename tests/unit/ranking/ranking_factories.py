"""Small synthetic catalogs and an independent reference for the hard filters."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from recommender.ranking.policy import CatalogArrays, PolicyConfig, RequestFilters

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def make_catalog(
    n_items: int = 10,
    *,
    is_head=None,
    category=None,
    price=None,
    in_stock=None,
    impressions_today=None,
    ever_shown=None,
    vectors=None,
    is_active=None,
) -> CatalogArrays:
    """A catalog where, unless told otherwise, every item is head, in stock, shown, category 0."""
    return CatalogArrays(
        is_head=np.ones(n_items, bool) if is_head is None else is_head,
        category=np.zeros(n_items, int) if category is None else category,
        price=np.full(n_items, 10.0) if price is None else price,
        in_stock=np.ones(n_items, bool) if in_stock is None else in_stock,
        impressions_today=(
            np.zeros(n_items, int) if impressions_today is None else impressions_today
        ),
        ever_shown=np.ones(n_items, bool) if ever_shown is None else ever_shown,
        vectors=vectors,
        is_active=is_active,
    )


def reference_eligible(
    item: int,
    catalog: CatalogArrays,
    policy: PolicyConfig,
    request: RequestFilters,
    bought,
) -> bool:
    """The hard filters, written out one rule at a time (independent of eligible_mask)."""
    if catalog.is_active is not None and not catalog.is_active[item]:
        return False
    if request.in_stock_only and not catalog.in_stock[item]:
        return False
    if request.categories is not None and int(catalog.category[item]) not in request.categories:
        return False
    price = float(catalog.price[item])
    if request.min_price is not None and not price >= request.min_price:
        return False
    if request.max_price is not None and not price <= request.max_price:
        return False
    cap = policy.item_impression_caps.get(item, policy.daily_impression_cap)
    if cap is not None and catalog.impressions_today[item] >= cap:
        return False
    if item in set(policy.buried) or item in {int(i) for i in request.exclude_ids}:
        return False
    if bought is not None and item in {int(i) for i in bought}:
        return False
    return True


def fill_world(rng: np.random.Generator, m: int, n_pins: int, dim: int = 8):
    """A greedy fill's inputs: a pool sorted by policy score, tail flags, items, catalog, pins."""
    n = m + n_pins + 5
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    if rng.random() < 0.3:  # near-duplicates: where MMR matters most
        vectors[: n // 2] = vectors[0] + 0.01 * rng.normal(size=(n // 2, dim)).astype(np.float32)
    catalog = make_catalog(
        n, is_head=rng.random(n) < 0.3, ever_shown=rng.random(n) < 0.8, vectors=vectors,
    )
    items = rng.permutation(n)[: m + n_pins]
    pins, items = items[:n_pins], items[n_pins:]
    adj = rng.normal(size=m) * rng.choice([0.01, 1.0, 30.0])
    if rng.random() < 0.3:
        adj = np.round(adj, 1)  # ties
    keep = np.argsort(-adj, kind="stable")
    return keep, adj, ~catalog.is_head[items], items, catalog, pins
