"""The demo tables the PostgreSQL dashboards chart, copied from the demo DuckDB file without harm to anything else.

Provisioning owns exactly the relations it created, and marks each with a COMMENT (`MARKER`). A
relation of the same name without the marker belongs to someone else: provisioning stops and names
it. A re-run refreshes a demo table's rows in place (DELETE + COPY in one transaction), so views
and grants that users built on it keep working; only when the columns changed is the table
replaced, with a plain DROP (never CASCADE), which PostgreSQL refuses while other objects depend on
it: provisioning then stops and names them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg
from psycopg import errors, sql

from .provision import ProvisionError

# A COMMENT on every object provisioning created: what a re-run may refresh or replace.
MARKER = "sqlml superset provisioning"
SCHEMA = "public"
# The lead features without the key and the label: what ml.predict_query scores, one column a feature.
LEAD_FEATURES_VIEW = "lead_features"

Report = Callable[[str], None]


@dataclass(frozen=True)
class DemoTable:
    name: str
    key: str


DEMO_TABLES = (DemoTable("reviews", "review_id"), DemoTable("leads", "lead_id"))
# Every relation the dashboards read, hence what the Superset role may SELECT.
DEMO_RELATIONS = (*(table.name for table in DEMO_TABLES), LEAD_FEATURES_VIEW)

# DuckDB types -> PostgreSQL types, spelled the way format_type() prints them (compared on re-runs).
_DUCKDB_TO_POSTGRES = {
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "SMALLINT": "smallint",
    "DOUBLE": "double precision",
    "FLOAT": "real",
    "BOOLEAN": "boolean",
    "VARCHAR": "text",
    "TIMESTAMP": "timestamp without time zone",
    "TIMESTAMP WITH TIME ZONE": "timestamp with time zone",
    "DATE": "date",
}

Columns = Sequence[tuple[str, str]]


def marker_comment(kind: str) -> str:
    return f"{MARKER}: demo {kind} for the dashboards, refreshed by `sqlml superset up`/`provision`"


def copy_demo_tables(conn: psycopg.Connection, demo_db: Path, report: Report) -> dict[str, int]:
    """Create or refresh `reviews`, `leads` and the view `lead_features`; returns table -> row count."""
    for name, kind in ((t.name, "r") for t in DEMO_TABLES):
        check_ownership(conn, name, kind)
    check_ownership(conn, LEAD_FEATURES_VIEW, "v")
    counts: dict[str, int] = {}
    source = duckdb.connect(str(demo_db), read_only=True)
    try:
        for table in DEMO_TABLES:
            columns = _duckdb_columns(source, table.name)
            rows = source.execute(
                sql_text("SELECT * FROM {} ORDER BY {}", table.name, table.key)  # DuckDB: quoted names
            ).fetchall()
            counts[table.name] = load_table(conn, table, columns, rows, report)
    finally:
        source.close()
    ensure_lead_features_view(conn)
    return counts


def check_ownership(conn: psycopg.Connection, name: str, kind: str) -> None:
    """Stop unless `public.name` is missing, or is a relation of `kind` that provisioning created."""
    row = conn.execute(
        "SELECT c.relkind, obj_description(c.oid, 'pg_class') FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        [SCHEMA, name],
    ).fetchone()
    if row is None:
        return
    relkind, comment = row
    if relkind != kind or not (comment or "").startswith(MARKER):
        what = "table" if kind == "r" else "view"
        raise ProvisionError(
            f"{SCHEMA}.{name} exists but was not created by sqlml's Superset provisioning, which never "
            f"touches objects it did not create. Rename it or use another --pg-database; or, if it is "
            f"an earlier provisioning's {what}, hand it over with: "
            f"COMMENT ON {what.upper()} {SCHEMA}.{name} IS '{marker_comment(what)}'"
        )


def load_table(
    conn: psycopg.Connection, table: DemoTable, columns: Columns, rows: Iterable[tuple], report: Report
) -> int:
    """Refresh the rows in place when the columns match, else (re)create the table; one transaction."""
    existing = _postgres_columns(conn, table.name)
    with conn.transaction():
        if existing == list(columns):
            _delete_rows(conn, table.name)
            return _copy_rows(conn, table.name, columns, rows)
        if existing:
            report(f"{SCHEMA}.{table.name}: columns changed, replacing the table")
            _drop_for_replacement(conn, table.name)
        _create_table(conn, table, columns)
        return _copy_rows(conn, table.name, columns, rows)


def ensure_lead_features_view(conn: psycopg.Connection) -> None:
    feature_columns = [name for name, _kind in _postgres_columns(conn, "leads") if name not in ("lead_id", "purchased")]
    conn.execute(
        sql.SQL("CREATE OR REPLACE VIEW {} AS SELECT lead_id, {} FROM {}").format(
            _qualified(LEAD_FEATURES_VIEW),
            sql.SQL(", ").join(map(sql.Identifier, feature_columns)),
            _qualified("leads"),
        )
    )
    conn.execute(
        sql.SQL("COMMENT ON VIEW {} IS {}").format(_qualified(LEAD_FEATURES_VIEW), sql.Literal(marker_comment("view")))
    )


def sql_text(template: str, *names: str) -> str:
    """`template` with each {} a double-quoted identifier, for the DuckDB side (no psycopg there)."""
    return template.format(*('"' + name.replace('"', '""') + '"' for name in names))


def _duckdb_columns(source: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    described = source.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [(str(name), _DUCKDB_TO_POSTGRES.get(str(kind), "text")) for name, kind in described]


def _postgres_columns(conn: psycopg.Connection, table: str) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        [SCHEMA, table],
    ).fetchall()
    return [(str(name), str(kind)) for name, kind in rows]


def _delete_rows(conn: psycopg.Connection, table: str) -> None:
    try:
        with conn.transaction():
            conn.execute(sql.SQL("DELETE FROM {}").format(_qualified(table)))
    except errors.ForeignKeyViolation as exc:
        raise ProvisionError(
            f"{SCHEMA}.{table} cannot be refreshed: {exc.diag.message_primary}. Nothing was changed; "
            "drop that foreign key or use another --pg-database, then run again."
        ) from exc


def _drop_for_replacement(conn: psycopg.Connection, table: str) -> None:
    """DROP without CASCADE: our own view goes first; anything a user built on either stops us."""
    try:
        with conn.transaction():
            if table == "leads":
                conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(_qualified(LEAD_FEATURES_VIEW)))
            conn.execute(sql.SQL("DROP TABLE {}").format(_qualified(table)))
    except errors.DependentObjectsStillExist as exc:
        detail = exc.diag.message_detail or str(exc)
        raise ProvisionError(
            f"{SCHEMA}.{table} must be replaced (the demo data's columns changed), but objects that "
            f"provisioning did not create depend on it:\n{detail}\nNothing was changed. Drop or "
            "rewrite those objects, or use another --pg-database, then run again."
        ) from exc


def _create_table(conn: psycopg.Connection, table: DemoTable, columns: Columns) -> None:
    definitions = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in columns
    )
    conn.execute(
        sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
            _qualified(table.name), definitions, sql.Identifier(table.key)
        )
    )
    conn.execute(
        sql.SQL("COMMENT ON TABLE {} IS {}").format(_qualified(table.name), sql.Literal(marker_comment("table")))
    )


def _copy_rows(conn: psycopg.Connection, table: str, columns: Columns, rows: Iterable[tuple]) -> int:
    names = sql.SQL(", ").join(sql.Identifier(name) for name, _kind in columns)
    count = 0
    with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(_qualified(table), names)) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def _qualified(name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(name))
