"""The column types of a model signature, and how each SQL engine spells them.

A signature (bridge/manifest.py `ColumnType`) types every input and output with one of these
names; the PostgreSQL functions that `ml.sync()` generates and the DuckDB macros declare the engine
type listed here. Standard library only: the PostgreSQL helper is built with this very module.
"""

from __future__ import annotations

SIGNATURE_TYPES = ("text", "double", "bigint", "boolean", "timestamp")

# As PostgreSQL's format_type() prints them, so a type read back from pg_catalog compares equal.
POSTGRES_TYPES: dict[str, str] = {
    "text": "text",
    "double": "double precision",
    "bigint": "bigint",
    "boolean": "boolean",
    "timestamp": "timestamp without time zone",
}

DUCKDB_TYPES: dict[str, str] = {
    "text": "VARCHAR",
    "double": "DOUBLE",
    "bigint": "BIGINT",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP",
}
