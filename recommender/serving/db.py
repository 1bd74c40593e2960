"""Cursors for the per-request queries of the serving path."""
from __future__ import annotations

from functools import cache

from django.db import connection

from ..conf import settings as rec_settings


#: psycopg's ``prepare_threshold`` that only an explicit ``prepare=True`` meets.
_NEVER_BY_COUNT = 2**62


@cache
def _preparing_cursor_class():
    from django.db.backends.postgresql.base import ServerBindingCursor

    class PreparingCursor(ServerBindingCursor):
        """Binds on the server and prepares every statement it runs (psycopg 3)."""

        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)

    return PreparingCursor


def prepared_cursor():
    """A Django cursor whose statements PostgreSQL keeps prepared on this connection.

    Django's psycopg 3 cursors bind parameters on the client and never prepare, so PostgreSQL
    parses and plans every statement again. This cursor binds them on the server and prepares
    each statement the first time it runs on a connection (psycopg keeps the last 100 and
    reuses them until the connection closes). It is still wrapped by Django (query logging,
    execute wrappers, error translation), so ``assertNumQueries`` and the like see it.

    Anywhere else (SQLite, psycopg 2, ``SERVING_PREPARED_STATEMENTS`` off) it is a plain
    ``connection.cursor()``. Give it fixed SQL text: each distinct text is one statement.
    """
    if connection.vendor != "postgresql" or not rec_settings.SERVING_PREPARED_STATEMENTS:
        return connection.cursor()
    from django.db.backends.postgresql import base

    if not base.is_psycopg3:
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        pg = connection.connection
        if pg.prepare_threshold is None:
            # Django turns psycopg's preparing off (None) unless OPTIONS asks for it; then even
            # prepare=True prepares nothing. A threshold no query reaches turns it back on for
            # the statements that ask (this cursor's) and for no others.
            pg.prepare_threshold = _NEVER_BY_COUNT
        raw = _preparing_cursor_class()(pg)
        # The time zone of returned timestamps, as Django's own cursors register it.
        loader = pg.adapters.get_loader(base.TIMESTAMPTZ_OID, base.Format.TEXT)
        if connection.timezone != loader.timezone:
            base.register_tzloader(connection.timezone, raw)
    return connection._prepare_cursor(raw)
