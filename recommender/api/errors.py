"""Every error the API returns has a ``detail`` that says what to change; batch errors list each record."""
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..ingestion import ValidationFailed


NOT_AUTHENTICATED = (
    "Authentication required: send 'Authorization: Bearer <API key>'. Create a key with "
    "`manage.py create_api_key --name NAME --scopes ingest,recommend,reports` or in the admin."
)


def exception_handler(exc, context):
    if isinstance(exc, exceptions.NotAuthenticated):
        exc.detail = exceptions.ErrorDetail(NOT_AUTHENTICATED, code="not_authenticated")
    if isinstance(exc, ValidationFailed):
        body = {"detail": exc.message}
        if exc.errors:
            body["errors"] = [e.as_dict() for e in exc.errors]
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)
