"""`sqlml.connect(dsn)`: a psycopg connection whose queries are batched transparently.

Every `execute()` through the wrapper passes its SQL through the rewriter (with the catalog read
once from the database's `ml` schema) before PostgreSQL sees it, so `SELECT ml.sentiment(body)
FROM reviews` costs one bridge call per batch instead of one per row. Queries with bound
parameters are rewritten too: sqlglot keeps `%s` / `%(name)s` placeholders in place. Anything
the wrapper does not know is delegated to the psycopg connection or cursor underneath.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from sqlml.sql.catalog import Catalog
from sqlml.sql.rewrite import rewrite

log = logging.getLogger("sqlml.rewrite")


class RewritingCursor:
    """A psycopg cursor whose execute() runs the batched form of the query."""

    def __init__(self, cursor: psycopg.Cursor[Any], catalog: Catalog):
        self._cursor = cursor
        self._catalog = catalog
        self.last_rewrite: str | None = None

    def execute(self, query: str, params: Any = None, **kwargs: Any) -> RewritingCursor:
        self._cursor.execute(self._rewritten(query), params, **kwargs)  # type: ignore[arg-type]
        return self

    def _rewritten(self, query: Any) -> Any:
        if not isinstance(query, str):
            return query  # psycopg.sql.Composed and friends: composed by the caller, left alone
        result = rewrite(query, self._catalog)
        self.last_rewrite = result.sql if result.changed else None
        return result.sql

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __iter__(self) -> Any:
        return iter(self._cursor)

    def __enter__(self) -> RewritingCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cursor.close()


class RewritingConnection:
    """A psycopg connection whose cursors (and `execute`) rewrite per-row model calls."""

    def __init__(self, connection: psycopg.Connection[Any], catalog: Catalog | None = None):
        self.connection = connection
        self.catalog = catalog if catalog is not None else Catalog.from_connection(connection)
        if not self.catalog.functions:
            log.info("sqlml.rewrite: no sqlml extension in this database; queries run as written")

    def cursor(self, *args: Any, **kwargs: Any) -> RewritingCursor:
        return RewritingCursor(self.connection.cursor(*args, **kwargs), self.catalog)

    def execute(self, query: str, params: Any = None, **kwargs: Any) -> RewritingCursor:
        return self.cursor().execute(query, params, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)

    def __enter__(self) -> RewritingConnection:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None and not self.connection.closed:
            self.connection.commit()
        self.connection.close()


def connect(dsn: str = "", *, catalog: Catalog | None = None, **kwargs: Any) -> RewritingConnection:
    """Open a PostgreSQL connection (psycopg 3 arguments) that batches ml.* calls transparently."""
    return RewritingConnection(psycopg.connect(dsn, **kwargs), catalog)
