"""Upsert catalog items in one statement per batch."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal

import orjson
from django.db import connection, transaction
from django.utils import timezone

from ..conf import settings as rec_settings
from ..models import Item
from .errors import FieldError, ValidationFailed
from .validation import CleanItem, validate_items


@dataclass(frozen=True)
class UpsertResult:
    received: int
    created: int
    updated: int


def content_hash(title: str, description: str, category: str, brand: str, price: Decimal | None) -> str:
    """sha256 of the fields the text embedding is made from; a change means re-embed."""
    payload = orjson.dumps([title, description, category, brand, None if price is None else str(price)])
    return hashlib.sha256(payload).hexdigest()


def check_batch_size(records: object, limit: int, noun: str) -> list:
    if isinstance(records, dict) and noun in records:
        records = records[noun]
    if not isinstance(records, list):
        raise ValidationFailed(f"Send a JSON array of {noun} (or an object with an '{noun}' array).")
    if not records:
        raise ValidationFailed(f"The batch is empty: send at least one of the {noun}.")
    if len(records) > limit:
        raise ValidationFailed(f"The batch has {len(records)} {noun}; the limit is {limit} per request. Split it.")
    return records


def do_upsert_items(records: object) -> UpsertResult:
    """Validate a batch of item records and insert or fully replace them, all or nothing.

    Fields a record leaves out get their defaults. A placeholder item (created by an
    event that came before its catalog entry) gets its text here and stops being one.
    """
    records = check_batch_size(records, rec_settings.MAX_ITEM_BATCH, "items")
    clean, errors = validate_items(records)
    if errors:
        raise ValidationFailed(f"{len(errors)} problem(s) in the batch; nothing was written.", errors)
    return do_write_items(clean, received=len(records))


def do_write_items(clean: list[CleanItem], *, received: int | None = None) -> UpsertResult:
    """Insert or replace already-validated items in one transaction (API and importers)."""
    # The last record for an id wins, as if the batch were applied in order.
    by_id: dict[str, CleanItem] = {}
    for item in clean:
        by_id[item.item_id] = item
    # Sorted so that concurrent batches lock rows in the same order and cannot deadlock.
    items = [by_id[k] for k in sorted(by_id)]
    now = timezone.now()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            created = _upsert_postgres(items, now)
        else:
            created = _upsert_generic(items, now)
    return UpsertResult(received=len(clean) if received is None else received, created=created, updated=len(items) - created)


_UPSERT_SQL = """
INSERT INTO recommender_item AS i (external_id, title, description, category, brand, price,
    attributes, is_active, in_stock, is_placeholder, text_hash, deleted_at, created_at, updated_at)
SELECT t.external_id, t.title, t.description, t.category, t.brand, t.price,
    coalesce(t.attributes, '{}'::jsonb), t.is_active, t.in_stock, false, t.text_hash, NULL, %(now)s, %(now)s
FROM json_to_recordset(%(rows)s::json) AS t(external_id text, title text, description text, category text,
    brand text, price numeric, attributes jsonb, is_active bool, in_stock bool, text_hash text)
ON CONFLICT (external_id) DO UPDATE SET
    title = EXCLUDED.title, description = EXCLUDED.description, category = EXCLUDED.category,
    brand = EXCLUDED.brand, price = EXCLUDED.price, attributes = EXCLUDED.attributes,
    is_active = EXCLUDED.is_active, in_stock = EXCLUDED.in_stock, is_placeholder = false,
    text_hash = EXCLUDED.text_hash, deleted_at = NULL, updated_at = EXCLUDED.updated_at
RETURNING (xmax = 0) AS inserted
"""


def _upsert_postgres(items: list[CleanItem], now) -> int:
    # One JSON document rather than array parameters: see the note in events.py.
    rows = [
        {
            "external_id": i.item_id, "title": i.title, "description": i.description, "category": i.category,
            "brand": i.brand, "price": None if i.price is None else str(i.price), "attributes": i.attributes,
            "is_active": i.is_active, "in_stock": i.in_stock,
            "text_hash": content_hash(i.title, i.description, i.category, i.brand, i.price),
        }
        for i in items
    ]
    with connection.cursor() as cur:
        cur.execute(_UPSERT_SQL, {"now": now, "rows": orjson.dumps(rows).decode()})
        return sum(1 for (inserted,) in cur.fetchall() if inserted)


def _upsert_generic(items: list[CleanItem], now) -> int:
    existing = set(
        Item.objects.filter(external_id__in=[i.item_id for i in items]).values_list("external_id", flat=True)
    )
    objs = [
        Item(
            external_id=i.item_id, title=i.title, description=i.description, category=i.category,
            brand=i.brand, price=i.price, attributes=i.attributes, is_active=i.is_active,
            in_stock=i.in_stock, is_placeholder=False, deleted_at=None, created_at=now, updated_at=now,
            text_hash=content_hash(i.title, i.description, i.category, i.brand, i.price),
        )
        for i in items
    ]
    Item.objects.bulk_create(
        objs,
        batch_size=500,
        update_conflicts=True,
        unique_fields=["external_id"],
        update_fields=[
            "title", "description", "category", "brand", "price", "attributes", "is_active",
            "in_stock", "is_placeholder", "text_hash", "deleted_at", "updated_at",
        ],
    )
    return sum(1 for i in items if i.item_id not in existing)


def do_delete_item(external_id: str) -> bool:
    """Remove an item from the catalog: never recommended again; its history stays for learning."""
    return bool(
        Item.objects.live()
        .filter(external_id=external_id)
        .update(deleted_at=timezone.now(), is_active=False, updated_at=timezone.now())
    )


__all__ = ["FieldError", "UpsertResult", "content_hash", "do_delete_item", "do_upsert_items", "do_write_items"]
