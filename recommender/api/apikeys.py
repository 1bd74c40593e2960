"""Creating and checking API keys. Keys are ``rk_<prefix>_<secret>``; only a sha256 is stored."""
from __future__ import annotations

import hashlib
import hmac
import secrets

from ..models import APIKey
from ..models.apikeys import SCOPES


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(raw: str | list[str]) -> list[str]:
    scopes = [s.strip() for s in (raw.split(",") if isinstance(raw, str) else raw) if s.strip()]
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"Unknown or missing scope(s) {unknown}; choose from {', '.join(SCOPES)}.")
    return sorted(set(scopes), key=SCOPES.index)


def do_create_api_key(name: str, scopes: str | list[str]) -> tuple[APIKey, str]:
    """Create a key; returns the row and the plain key, which is never retrievable again."""
    clean = parse_scopes(scopes)
    prefix = secrets.token_hex(4)
    while APIKey.objects.filter(prefix=prefix).exists():
        prefix = secrets.token_hex(4)
    key = f"rk_{prefix}_{secrets.token_urlsafe(32)}"
    row = APIKey.objects.create(name=name, prefix=prefix, key_hash=_hash(key), scopes=clean)
    return row, key


def find_api_key(key: str) -> APIKey | None:
    """The active key row matching ``key``, compared in constant time, or None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "rk":
        return None
    row = APIKey.objects.filter(prefix=parts[1], is_active=True).first()
    if row is None or not hmac.compare_digest(row.key_hash, _hash(key)):
        return None
    return row
