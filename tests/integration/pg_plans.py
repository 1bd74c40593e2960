"""Which index PostgreSQL can use for a query on the events table, whatever the tiny test data.

The test tables hold a few rows, so the planner's choice among indexes means little there.
:func:`leave_only_index` drops every other index of ``recommender_event`` that no constraint
needs (the DDL rolls back with the test's transaction) and forbids sequential and bitmap
scans: a query whose WHERE clause does not imply the index's predicate, or that reads a
column the index does not hold, then shows no (index-only) scan of it in :func:`explain`.
"""
from __future__ import annotations

from django.db import connection

_DROPPABLE = """
SELECT i.indexrelid::regclass::text FROM pg_index i
WHERE i.indrelid = 'recommender_event'::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
"""


def leave_only_index(name: str) -> None:
    with connection.cursor() as cur:
        cur.execute(_DROPPABLE)
        others = [r[0] for r in cur.fetchall() if r[0] != name]
        assert len(others) >= 4, others  # the events table's own indexes were found
        for other in others:
            cur.execute(f'DROP INDEX "{other}"')
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL enable_bitmapscan = off")


def explain(sql: str, params=None) -> str:
    with connection.cursor() as cur:
        cur.execute("EXPLAIN " + sql, params)
        return "\n".join(r[0] for r in cur.fetchall())
