"""Scope checks: each view names the scope it needs in ``required_scope``."""
from rest_framework import permissions

from .authentication import APIKeyUser


class HasScope(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        user = request.user
        if user is None or not getattr(user, "is_authenticated", False):
            self.message = (
                "Authentication required: send 'Authorization: Bearer <API key>'. "
                "Create a key with `manage.py create_api_key --name NAME --scopes ingest,recommend,reports`."
            )
            return False
        scope = getattr(view, "required_scope", None)
        if isinstance(user, APIKeyUser):
            if scope and scope not in user.scopes:
                self.message = (
                    f"This API key lacks the '{scope}' scope (it has: {', '.join(sorted(user.scopes)) or 'none'}). "
                    f"Use a key created with --scopes {scope}."
                )
                return False
            return True
        # Staff signed in to the admin may use the browsable API.
        self.message = "Only staff users or API keys may use the API."
        return bool(user.is_staff)
