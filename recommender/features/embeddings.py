"""Item texts to embed and stored item vectors, as arrays."""
from __future__ import annotations

import numpy as np
from django.db.models import Exists, OuterRef

from ..conf import settings as rec_settings
from ..ml.text import item_text, price_band, price_band_edges
from ..models import Item, ItemEmbedding


def text_model_name() -> str:
    """The name under which vectors of the configured text model are stored."""
    return rec_settings.TEXT_MODEL_PATH or "packaged:all-MiniLM-L6-v2"


def dirty_items():
    """Live items with text whose stored vector is missing, stale, or from another model."""
    fresh = ItemEmbedding.objects.filter(
        item=OuterRef("pk"), source_hash=OuterRef("text_hash"), model_name=text_model_name()
    )
    return Item.objects.live().filter(is_placeholder=False).exclude(title="").filter(~Exists(fresh))


def catalog_price_edges() -> np.ndarray:
    """(3,) price quantiles of the live catalog that cut the price-band words."""
    prices = np.array(
        [float(p) for p in Item.objects.live().exclude(price=None).values_list("price", flat=True)], dtype=np.float64
    )
    return price_band_edges(prices)


def texts_for(items: list[Item], edges: np.ndarray) -> list[str]:
    return [
        item_text(i.title, i.category, i.brand, i.description, price_band(None if i.price is None else float(i.price), edges))
        for i in items
    ]


def load_item_vectors(item_pks: np.ndarray, dim: int | None = None) -> np.ndarray | None:
    """(n, d) float32 stored vectors of ``item_pks`` in that order; zero rows where missing.

    Returns None when no item has a vector yet.
    """
    rows = ItemEmbedding.objects.filter(model_name=text_model_name()).values_list("item_id", "dim", "vector")
    by_pk: dict[int, np.ndarray] = {}
    for pk, d, blob in rows.iterator(chunk_size=5000):
        by_pk[pk] = np.frombuffer(bytes(blob), dtype=np.float32, count=d)
    if not by_pk:
        return None
    dim = dim or next(iter(by_pk.values())).shape[0]
    out = np.zeros((len(item_pks), dim), dtype=np.float32)
    for n, pk in enumerate(np.asarray(item_pks).tolist()):
        vec = by_pk.get(pk)
        if vec is not None and vec.shape[0] == dim:
            out[n] = vec
    return out


__all__ = ["catalog_price_edges", "dirty_items", "load_item_vectors", "text_model_name", "texts_for"]
