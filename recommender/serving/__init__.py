"""Online serving: the active model's vectors in memory, the exposure policy, fallbacks, impressions.

The web process never imports torch: vectors are memory-mapped ``.npy`` files of the
artifact and the policy core is numpy.
"""
from .services import Filters, Recommendations, UnknownItem, recommend_for_session, recommend_for_user, similar_items

__all__ = [
    "Filters", "Recommendations", "UnknownItem", "recommend_for_session", "recommend_for_user", "similar_items",
]
