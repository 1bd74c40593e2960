"""``Authorization: Bearer <API key>`` authentication for the REST API."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from ..models import APIKey
from .apikeys import find_api_key

LAST_USED_RESOLUTION = timedelta(minutes=5)


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
        key = find_api_key(parts[1])
        if key is None:
            raise exceptions.AuthenticationFailed(
                "Invalid or revoked API key. Create one with `manage.py create_api_key` or in the admin."
            )
        now = timezone.now()
        # Written at most every few minutes so that hot endpoints do not pay a write per request.
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            APIKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return APIKeyUser(key), key

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'


from . import schema  # noqa: E402,F401  (registers the OpenAPI description of this scheme)
