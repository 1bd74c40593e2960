"""Validate and bulk-write catalog items and behaviour events, idempotently."""
from .errors import FieldError, ValidationFailed
from .events import IngestResult, do_ingest_events
from .items import UpsertResult, do_upsert_items

__all__ = [
    "FieldError",
    "IngestResult",
    "UpsertResult",
    "ValidationFailed",
    "do_ingest_events",
    "do_upsert_items",
]
