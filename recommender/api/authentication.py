"""``Authorization: Bearer <API key>`` authentication for the REST API.

A key found in the database is trusted for ``KEY_CACHE_SECONDS`` without asking again, so a
hot endpoint does not pay a query per request for it. Saving or deleting an ``APIKey`` (the
admin, ``manage.py``) forgets every cached key of that process at once; other processes
notice a revocation within ``KEY_CACHE_SECONDS``. Keys that are not found are never cached,
so a new key works at once.
"""
from __future__ import annotations

import hashlib
import logging
import time
from datetime import timedelta

from django.db import OperationalError
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from rest_framework import authentication, exceptions

from ..models import APIKey
from .apikeys import find_api_key

log = logging.getLogger(__name__)

LAST_USED_RESOLUTION = timedelta(minutes=5)
#: How long a process trusts a key it looked up: the delay before a revocation made by
#: another process (or a bulk ``update``) takes effect here.
KEY_CACHE_SECONDS = 5.0
#: More distinct valid keys than this in one process: start over (a shop has a handful).
KEY_CACHE_SIZE = 1000

#: The clock of the key cache; tests replace it to move time.
clock = time.monotonic
_cache: dict[str, tuple[float, APIKey]] = {}


def forget_cached_keys(**_: object) -> None:
    """Drop every key this process trusts (on any APIKey save or delete, and in tests)."""
    _cache.clear()


post_save.connect(forget_cached_keys, sender=APIKey, dispatch_uid="rec-apikey-cache-save")
post_delete.connect(forget_cached_keys, sender=APIKey, dispatch_uid="rec-apikey-cache-delete")


def _lookup(raw: str) -> APIKey | None:
    """The active key row of ``raw``: from this process's cache while fresh, else the database."""
    digest = hashlib.sha256(raw.encode()).hexdigest()
    now = clock()
    hit = _cache.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    key = find_api_key(raw)
    if key is None:
        _cache.pop(digest, None)
        return None
    if len(_cache) >= KEY_CACHE_SIZE:
        _cache.clear()
    _cache[digest] = (now + KEY_CACHE_SECONDS, key)
    # Written at most every few minutes so that hot endpoints do not pay a write per request.
    moment = timezone.now()
    if key.last_used_at is None or moment - key.last_used_at > LAST_USED_RESOLUTION:
        try:
            APIKey.objects.filter(pk=key.pk).update(last_used_at=moment)
        except OperationalError:
            # Bookkeeping must not fail the request: SQLite refuses a write while another
            # thread writes ("database table is locked"); the next lookup writes it instead.
            log.info("could not record the use of API key %s now; later", key.pk, exc_info=True)
            return key
        key.last_used_at = moment
    return key


def find_active_key(header: str) -> APIKey | None:
    """The active key of an ``Authorization: Bearer <key>`` header value, or None (no key, another
    scheme, a malformed header or an unknown or revoked key: DRF's authentication says which)."""
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != APIKeyAuthentication.keyword.lower():
        return None
    return _lookup(parts[1])


class APIKeyUser:
    """The request.user of a key-authenticated request: it has scopes, not permissions."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False

    def __init__(self, key: APIKey) -> None:
        self.key = key
        self.scopes = frozenset(key.scopes)

    def __str__(self) -> str:
        return f"API key {self.key.name}"


class APIKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if parts[0].lower() != self.keyword.lower():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: send exactly 'Authorization: Bearer <API key>'."
            )
        key = _lookup(parts[1])
        if key is None:
            raise exceptions.AuthenticationFailed(
                "Invalid or revoked API key. Create one with `manage.py create_api_key` or in the admin."
            )
        return APIKeyUser(key), key

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'


from . import schema  # noqa: E402,F401  (registers the OpenAPI description of this scheme)
