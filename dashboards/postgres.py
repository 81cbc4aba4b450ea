"""The PostgreSQL side of the dashboards: a database with the sqlml extension and the demo tables.

The PostgreSQL-backed datasets call the models live (`ml.sentiment`, `ml.predict_query`,
`ml.explain`) through the extension, which reaches the bridge at `sqlml.bridge_url`. This module
creates that database if needed, installs the extension, points it at the bridge, and copies the
demo tables (`reviews`, `leads`) from the demo DuckDB file. Every step is idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg
from psycopg import sql

DEFAULT_DATABASE = "sqlml_demo"
# The lead features without the key and the label: what ml.predict_query scores, one column a feature.
LEAD_FEATURES_VIEW = "lead_features"


@dataclass(frozen=True)
class PostgresTarget:
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    database: str = DEFAULT_DATABASE

    def conninfo(self, database: str | None = None) -> str:
        parts = [f"host={self.host}", f"port={self.port}", f"user={self.user}", f"dbname={database or self.database}"]
        if self.password:
            parts.append(f"password={self.password}")
        return " ".join(parts)

    def superset_uri(self) -> str:
        """The SQLAlchemy URI Superset's venv (psycopg2) connects with."""
        auth = self.user + (f":{self.password}" if self.password else "")
        return f"postgresql+psycopg2://{auth}@{self.host}:{self.port}/{self.database}"


def prepare_database(
    target: PostgresTarget, demo_db: Path, bridge_url: str, timeout_ms: int = 60_000
) -> dict[str, int]:
    """Create the database, the extension and the demo tables; returns table -> row count.

    `timeout_ms` is generous because a dashboard's first query may wait for the bridge to load a
    model; a bridge that is down still fails at once (connection refused).
    """
    _create_database(target)
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS sqlml CASCADE")
        # A database-level setting, so every Superset connection reaches the bridge without SET.
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET sqlml.bridge_url = {}").format(
                sql.Identifier(target.database), sql.Literal(bridge_url)
            )
        )
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET sqlml.timeout_ms = {}").format(
                sql.Identifier(target.database), sql.Literal(str(timeout_ms))
            )
        )
        counts = _copy_tables(conn, demo_db)
    return counts


def sync_models(target: PostgresTarget) -> list[tuple[str, str, str]]:
    """Run ml.sync() so the typed per-model functions (e.g. ml.lead_score) exist; needs the bridge."""
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        return [tuple(map(str, row)) for row in conn.execute("SELECT * FROM ml.sync()").fetchall()]  # type: ignore[misc]


def _create_database(target: PostgresTarget) -> None:
    with psycopg.connect(target.conninfo("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [target.database]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.database)))


_DUCKDB_TO_POSTGRES = {
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "SMALLINT": "smallint",
    "DOUBLE": "double precision",
    "FLOAT": "real",
    "BOOLEAN": "boolean",
    "VARCHAR": "text",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "DATE": "date",
}


def _copy_tables(conn: psycopg.Connection, demo_db: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    source = duckdb.connect(str(demo_db), read_only=True)
    try:
        for table, key in (("reviews", "review_id"), ("leads", "lead_id")):
            columns = source.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position",
                [table],
            ).fetchall()
            rows = source.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
            counts[table] = _replace_table(conn, table, key, columns, rows)
    finally:
        source.close()
    feature_columns = [
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'leads' "
            "AND column_name NOT IN ('lead_id', 'purchased') ORDER BY ordinal_position"
        ).fetchall()
    ]
    conn.execute(
        sql.SQL("CREATE OR REPLACE VIEW public.{} AS SELECT lead_id, {} FROM public.leads").format(
            sql.Identifier(LEAD_FEATURES_VIEW), sql.SQL(", ").join(map(sql.Identifier, feature_columns))
        )
    )
    return counts


def _replace_table(
    conn: psycopg.Connection, table: str, key: str, columns: Sequence[tuple[str, str]], rows: Iterable[tuple]
) -> int:
    """Load a table in one transaction: readers see the old rows or the new ones, never a mix."""
    definitions = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(_DUCKDB_TO_POSTGRES.get(kind, "text")))
        for name, kind in columns
    )
    staging = f"{table}__loading"
    names = sql.SQL(", ").join(sql.Identifier(name) for name, _kind in columns)
    count = 0
    with conn.transaction():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS public.{}").format(sql.Identifier(staging)))
        conn.execute(sql.SQL("CREATE TABLE public.{} ({})").format(sql.Identifier(staging), definitions))
        with conn.cursor().copy(
            sql.SQL("COPY public.{} ({}) FROM STDIN").format(sql.Identifier(staging), names)
        ) as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        conn.execute(
            sql.SQL("ALTER TABLE public.{} ADD PRIMARY KEY ({})").format(sql.Identifier(staging), sql.Identifier(key))
        )
        conn.execute(sql.SQL("DROP TABLE IF EXISTS public.{} CASCADE").format(sql.Identifier(table)))
        conn.execute(
            sql.SQL("ALTER TABLE public.{} RENAME TO {}").format(sql.Identifier(staging), sql.Identifier(table))
        )
    return count
