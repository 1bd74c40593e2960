"""Cursors for the serving path's repeated queries (each request's history, each impression flush)."""
from __future__ import annotations

from functools import cache

from django.db import DEFAULT_DB_ALIAS, connections

from ..conf import settings as rec_settings


#: psycopg's ``prepare_threshold`` that only an explicit ``prepare=True`` meets.
_NEVER_BY_COUNT = 2**62


@cache
def _preparing_cursor_classes():
    from django.db.backends.postgresql.base import ServerBindingCursor

    class PreparingCursor(ServerBindingCursor):
        """Binds on the server and prepares every statement it runs (psycopg 3)."""

        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)

    class LoggedPreparingCursor(PreparingCursor):
        """The same, keeping the statement's text where Django's query log reads it.

        psycopg sets ``_query`` (what Django logs under ``DEBUG`` or ``assertNumQueries``) only
        when it sends a statement's text, not when it runs a prepared one, so the log would show
        ``None``. Only the watched path pays for converting the query a second time.
        """

        def execute(self, query, params=None, *, prepare=None, binary=None):
            out = super().execute(query, params, prepare=prepare, binary=binary)
            if self._query is None:
                self._query = self._convert_query(query, params)
            return out

    return PreparingCursor, LoggedPreparingCursor


def prepared_cursor():
    """A cursor whose statements PostgreSQL keeps prepared on this connection.

    Django's psycopg 3 cursors bind parameters on the client and never prepare, so PostgreSQL
    parses and plans every statement again. This cursor binds them on the server and prepares
    each statement the first time it runs on a connection (psycopg keeps the last 100 and
    reuses them until the connection closes).

    While anything watches this connection's queries (``DEBUG``, ``assertNumQueries``,
    ``CaptureQueriesContext``, an ``execute_wrapper`` such as an APM's), it is a new cursor
    wrapped by Django like any other, so they see the query. Otherwise it is one cursor kept
    per connection, with Django's database error translation but without its wrapper objects:
    creating and wrapping a cursor cost ~0.1 ms of CPU a request, as much as the query itself
    (measured in process on the benchmark's database).

    Anywhere else (SQLite, psycopg 2, ``SERVING_PREPARED_STATEMENTS`` off) it is a plain
    ``connection.cursor()``. Give it fixed SQL text: each distinct text is one statement.
    """
    db = connections[DEFAULT_DB_ALIAS]  # the proxy ``connection`` looks this up on every access
    if db.vendor != "postgresql" or not rec_settings.SERVING_PREPARED_STATEMENTS:
        return db.cursor()
    from django.db.backends.postgresql import base

    if not base.is_psycopg3:
        return db.cursor()
    db.close_if_health_check_failed()
    db.ensure_connection()
    watched = db.queries_logged or db.execute_wrappers
    pg = db.connection
    kept = getattr(db, "_rec_kept_cursor", None)
    if not watched and kept is not None and kept.pg is pg and not kept.raw.closed:
        return kept
    with db.wrap_database_errors:
        if pg.prepare_threshold is None:
            # Django turns psycopg's preparing off (None) unless OPTIONS asks for it; then even
            # prepare=True prepares nothing. A threshold no query reaches turns it back on for
            # the statements that ask (this cursor's) and for no others.
            pg.prepare_threshold = _NEVER_BY_COUNT
        plain, logged = _preparing_cursor_classes()
        raw = (logged if watched else plain)(pg)
        # The time zone of returned timestamps, as Django's own cursors register it.
        loader = pg.adapters.get_loader(base.TIMESTAMPTZ_OID, base.Format.TEXT)
        if db.timezone != loader.timezone:
            base.register_tzloader(db.timezone, raw)
    if watched:
        return db._prepare_cursor(raw)
    kept = _KeptCursor(db, pg, raw)
    db._rec_kept_cursor = kept
    return kept


class _KeptCursor:
    """The one prepared-statement cursor of a connection, reused by every request."""

    __slots__ = ("db", "pg", "raw")

    def __init__(self, db, pg, raw) -> None:
        self.db = db
        self.pg = pg
        self.raw = raw

    def __enter__(self) -> "_KeptCursor":
        return self

    def __exit__(self, *exc) -> None:
        return None  # kept open for the next request; psycopg drops its results on the next execute

    def execute(self, sql: str, params=None) -> None:
        self.db.validate_no_broken_transaction()
        with self.db.wrap_database_errors:
            self.raw.execute(sql, params)

    def fetchall(self) -> list[tuple]:
        with self.db.wrap_database_errors:
            return self.raw.fetchall()

    def fetchone(self) -> tuple | None:
        with self.db.wrap_database_errors:
            return self.raw.fetchone()
