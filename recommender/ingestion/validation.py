"""Fast, dependency-free validation of item and event records (plain dicts from JSON or CSV).

DRF serializers cost tens of microseconds per record; a 10,000-event batch must validate
in a few milliseconds, so these are hand-written checks that collect every error with its
record index and a message that says what to change.
"""
from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from ..conf import EVENT_TYPES
from ..conf import settings as rec_settings
from .errors import FieldError

EVENT_TYPE_CODES = {name: code for code, name in enumerate(EVENT_TYPES, start=1)}
ITEM_FIELDS = frozenset(
    {"item_id", "title", "description", "category", "brand", "price", "attributes", "is_active", "in_stock"}
)
EVENT_FIELDS = frozenset(
    {"user_id", "item_id", "event_type", "timestamp", "value", "query", "request_id", "event_id"}
)
MAX_ATTRIBUTES_BYTES = 16_384
MAX_PRICE = Decimal("9999999999.99")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DIGITS = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(slots=True)
class CleanItem:
    item_id: str
    title: str
    description: str
    category: str
    brand: str
    price: Decimal | None
    attributes: dict
    is_active: bool
    in_stock: bool


@dataclass(slots=True)
class CleanEvent:
    user_id: str
    item_id: str
    event_type: int
    timestamp: datetime
    value: float | None
    query: str
    request_id: uuid.UUID | None
    event_id: str | None


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


class _Checker:
    """Collects errors for one batch; each ``field_*`` returns the clean value or None."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.lengths = rec_settings.MAX_LENGTHS

    def fail(self, index: int, field: str, message: str) -> None:
        self.errors.append(FieldError(index, field, message))

    def ident(self, index: int, rec: dict, field: str, required: bool = True) -> str | None:
        value = rec.get(field)
        if value is None:
            if required:
                self.fail(index, field, f"'{field}' is required: the shop's own id as a string.")
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.fail(index, field, f"'{field}' must be a string (or integer) id, got {_type_name(value)}.")
            return None
        value = str(value).strip()
        if not value:
            self.fail(index, field, f"'{field}' must not be empty.")
            return None
        limit = self.lengths[field]
        if len(value) > limit:
            self.fail(index, field, f"'{field}' is {len(value)} characters; the limit is {limit}.")
            return None
        return value

    def text(self, index: int, rec: dict, field: str, required: bool = False) -> str:
        value = rec.get(field)
        if value is None:
            if required:
                self.fail(index, field, f"'{field}' is required.")
            return ""
        if not isinstance(value, str):
            self.fail(index, field, f"'{field}' must be a string, got {_type_name(value)}.")
            return ""
        value = value.strip()
        if required and not value:
            self.fail(index, field, f"'{field}' must not be empty.")
        limit = self.lengths[field]
        if len(value) > limit:
            self.fail(index, field, f"'{field}' is {len(value)} characters; the limit is {limit}.")
        return value

    def boolean(self, index: int, rec: dict, field: str, default: bool) -> bool:
        value = rec.get(field, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(index, field, f"'{field}' must be true or false, got {_type_name(value)}.")
            return default
        return value

    def unknown(self, index: int, rec: dict, allowed: frozenset) -> None:
        extra = rec.keys() - allowed
        if extra:
            names = ", ".join(sorted(map(str, extra)))
            self.fail(index, sorted(map(str, extra))[0], f"Unknown field(s) {names}; allowed fields are {', '.join(sorted(allowed))}.")


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 string or unix seconds (number or digit string) -> aware UTC datetime."""
    if isinstance(value, bool):
        raise ValueError("must be an ISO 8601 string or unix seconds, got a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError("must be a finite number of unix seconds")
        return _EPOCH + timedelta(seconds=float(value))
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS.match(text):
            return _EPOCH + timedelta(seconds=float(text))
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
        if dt.tzinfo is None:
            return dt.replace(tzinfo=timezone.utc)
        return dt.astimezone(timezone.utc)
    raise ValueError(f"must be an ISO 8601 string or unix seconds, got {_type_name(value)}")


def validate_items(records: Any) -> tuple[list[CleanItem | None], list[FieldError]]:
    """Check item records; returns one clean item per record (None where invalid) and the errors."""
    check = _Checker()
    out: list[CleanItem | None] = []
    for index, rec in enumerate(records):
        if not isinstance(rec, dict):
            check.fail(index, "", f"Each item must be a JSON object, got {_type_name(rec)}.")
            out.append(None)
            continue
        before = len(check.errors)
        check.unknown(index, rec, ITEM_FIELDS)
        item_id = check.ident(index, rec, "item_id")
        title = check.text(index, rec, "title", required=True)
        description = check.text(index, rec, "description")
        category = check.text(index, rec, "category")
        brand = check.text(index, rec, "brand")
        price = None
        raw_price = rec.get("price")
        if raw_price is not None:
            if isinstance(raw_price, bool) or not isinstance(raw_price, (int, float, str)):
                check.fail(index, "price", f"'price' must be a number, got {_type_name(raw_price)}.")
            else:
                try:
                    price = Decimal(str(raw_price).strip()).quantize(Decimal("0.01"))
                    if not price.is_finite() or price < 0 or price > MAX_PRICE:
                        raise InvalidOperation
                except (InvalidOperation, ValueError):
                    check.fail(index, "price", f"'price' must be a number from 0 to {MAX_PRICE}, got {raw_price!r}.")
                    price = None
        attributes = rec.get("attributes") or {}
        if not isinstance(attributes, dict):
            check.fail(index, "attributes", f"'attributes' must be an object, got {_type_name(attributes)}.")
            attributes = {}
        elif attributes:
            size = len(orjson.dumps(attributes))
            if size > MAX_ATTRIBUTES_BYTES:
                check.fail(index, "attributes", f"'attributes' is {size} bytes of JSON; the limit is {MAX_ATTRIBUTES_BYTES}.")
        is_active = check.boolean(index, rec, "is_active", True)
        in_stock = check.boolean(index, rec, "in_stock", True)
        if len(check.errors) > before or item_id is None:
            out.append(None)
            continue
        out.append(CleanItem(item_id, title, description, category, brand, price, attributes, is_active, in_stock))
    return out, check.errors


def validate_events(records: Any, now: datetime | None = None) -> tuple[list[CleanEvent | None], list[FieldError]]:
    """Check event records; returns one clean event per record (None where invalid) and the errors."""
    check = _Checker()
    now = now or datetime.now(timezone.utc)
    latest = now + rec_settings.MAX_FUTURE_SKEW
    earliest = parse_timestamp(rec_settings.MIN_EVENT_TIME)
    out: list[CleanEvent | None] = []
    type_codes = EVENT_TYPE_CODES
    for index, rec in enumerate(records):
        if not isinstance(rec, dict):
            check.fail(index, "", f"Each event must be a JSON object, got {_type_name(rec)}.")
            out.append(None)
            continue
        before = len(check.errors)
        if len(rec) > 8 or not rec.keys() <= EVENT_FIELDS:
            check.unknown(index, rec, EVENT_FIELDS)
        user_id = check.ident(index, rec, "user_id")
        item_id = check.ident(index, rec, "item_id")
        raw_type = rec.get("event_type")
        code = type_codes.get(raw_type) if isinstance(raw_type, str) else None
        if code is None:
            if raw_type is None:
                check.fail(index, "event_type", f"'event_type' is required: one of {', '.join(EVENT_TYPES)}.")
            else:
                check.fail(index, "event_type", f"Unknown event type {raw_type!r}; use one of {', '.join(EVENT_TYPES)}.")
        raw_ts = rec.get("timestamp")
        ts = None
        if raw_ts is None:
            check.fail(index, "timestamp", "'timestamp' is required: ISO 8601 (UTC if no zone) or unix seconds.")
        else:
            try:
                ts = parse_timestamp(raw_ts)
            except (ValueError, OverflowError) as exc:
                check.fail(index, "timestamp", f"'timestamp' {raw_ts!r} {exc}; use ISO 8601 such as 2024-05-01T12:00:00Z.")
            else:
                if ts > latest:
                    check.fail(
                        index, "timestamp",
                        f"'timestamp' {ts.isoformat()} is in the future (server time {now.isoformat(timespec='seconds')}); "
                        "send events when they happen, in UTC.",
                    )
                    ts = None
                elif ts < earliest:
                    check.fail(index, "timestamp", f"'timestamp' {ts.isoformat()} is before {earliest.date()}; was it sent in milliseconds instead of seconds?")
                    ts = None
        value = rec.get("value")
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                check.fail(index, "value", f"'value' must be a finite number (quantity, rating or dwell seconds), got {value!r}.")
                value = None
            else:
                value = float(value)
        query = check.text(index, rec, "query") if "query" in rec else ""
        request_id = None
        raw_req = rec.get("request_id")
        if raw_req is not None:
            try:
                request_id = uuid.UUID(str(raw_req)) if isinstance(raw_req, str) else None
                if request_id is None:
                    raise ValueError
            except ValueError:
                check.fail(index, "request_id", f"'request_id' must be the UUID string a recommendation response gave, got {raw_req!r}.")
        event_id = check.ident(index, rec, "event_id", required=False) if "event_id" in rec else None
        if len(check.errors) > before or user_id is None or item_id is None or code is None or ts is None:
            out.append(None)
            continue
        out.append(CleanEvent(user_id, item_id, code, ts, value, query, request_id, event_id))
    return out, check.errors
