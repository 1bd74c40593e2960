"""Embed the text of new and changed items in bounded batches."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.utils import timezone

from ..conf import settings as rec_settings
from ..features.embeddings import catalog_price_edges, dirty_items, text_model_name, texts_for
from ..ml.text import Embedder
from ..models import ItemEmbedding

log = logging.getLogger(__name__)
_EMBEDDERS: dict[str, Embedder] = {}


def get_embedder() -> Embedder:
    """One loaded text model per worker process (loading costs seconds; never at import time)."""
    name = text_model_name()
    if name not in _EMBEDDERS:
        _EMBEDDERS[name] = Embedder(rec_settings.TEXT_MODEL_PATH, batch_size=64, num_threads=1)
    return _EMBEDDERS[name]


@dataclass(frozen=True)
class EmbedResult:
    embedded: int
    remaining: int
    seconds: float


def do_embed_items(*, max_items: int | None = None, batch_size: int | None = None, embedder: Embedder | None = None) -> EmbedResult:
    """Embed up to ``max_items`` dirty items (all when None), committing each batch."""
    batch_size = batch_size or rec_settings.EMBED_BATCH_SIZE
    embedder = embedder or get_embedder()
    name = text_model_name()
    started = time.perf_counter()
    edges = catalog_price_edges()
    done = 0
    last_pk = 0
    while max_items is None or done < max_items:
        take = batch_size if max_items is None else min(batch_size, max_items - done)
        # Keyset pagination: an item that cannot be embedded is never fetched twice in one run.
        items = list(dirty_items().filter(pk__gt=last_pk).order_by("pk")[:take])
        if not items:
            break
        last_pk = items[-1].pk
        vectors = embedder.encode(texts_for(items, edges)).astype(np.float32)
        now = timezone.now()
        rows = [
            ItemEmbedding(
                item_id=item.pk, model_name=name, source_hash=item.text_hash, dim=vectors.shape[1],
                vector=vectors[n].tobytes(), updated_at=now,
            )
            for n, item in enumerate(items)
        ]
        with transaction.atomic():
            ItemEmbedding.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["item"],
                update_fields=["model_name", "source_hash", "dim", "vector", "updated_at"],
            )
        done += len(items)
    remaining = dirty_items().count()
    result = EmbedResult(done, remaining, time.perf_counter() - started)
    log.info("embedded %d items in %.1fs (%d still dirty)", done, result.seconds, remaining)
    return result
