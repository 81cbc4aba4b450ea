"""The PostgreSQL side of the dashboards: a database with the sqlml extension, the demo tables and Superset's role.

The PostgreSQL-backed datasets call the models live (`ml.sentiment`, `ml.predict_query`,
`ml.explain`) through the extension, which reaches the bridge at `sqlml.bridge_url`. This module
creates that database if needed, installs the extension, points it at the bridge, copies the demo
tables (`reviews`, `leads`) from the demo DuckDB file and gives Superset a least-privilege login.
It runs as an administrator (`PostgresTarget`); Superset never does.

Every step is idempotent and touches only what provisioning created (demo_tables.py): no CASCADE,
and every database setting it changes is reported with its old and new value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from .demo_tables import DEMO_RELATIONS, LEAD_FEATURES_VIEW, copy_demo_tables
from .superset_role import DEFAULT_ROLE, SupersetLogin, ensure_role

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_ROLE",
    "LEAD_FEATURES_VIEW",
    "PostgresTarget",
    "SupersetLogin",
    "prepare_database",
    "sync_models",
]

DEFAULT_DATABASE = "sqlml_demo"
Report = Callable[[str], None]


@dataclass(frozen=True)
class PostgresTarget:
    """How provisioning connects: an administrator of the server (creates the database, the role)."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    database: str = DEFAULT_DATABASE

    def conninfo(self, database: str | None = None) -> str:
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=database or self.database,
            password=self.password or None,
        )

    def superset_uri(self, login: SupersetLogin) -> str:
        """The URI Superset is given: the same server and database, as the least-privilege `login`."""
        return login.uri(self.host, self.port, self.database)


def prepare_database(
    target: PostgresTarget,
    demo_db: Path,
    bridge_url: str,
    login: SupersetLogin,
    *,
    timeout_ms: int = 60_000,
    report: Report = print,
) -> dict[str, int]:
    """Create the database, the extension, the demo tables and Superset's role; returns table -> row count.

    `timeout_ms` is generous because a dashboard's first query may wait for the bridge to load a
    model; a bridge that is down still fails at once (connection refused).
    """
    _create_database(target, report)
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        _create_extensions(conn, report)
        # Database-level settings, so every Superset connection reaches the bridge without SET.
        settings = {"sqlml.bridge_url": bridge_url, "sqlml.timeout_ms": str(timeout_ms)}
        apply_database_settings(conn, target.database, settings, report)
        counts = copy_demo_tables(conn, demo_db, report)
        ensure_role(conn, login, target.database, DEMO_RELATIONS, report)
    return counts


def sync_models(target: PostgresTarget) -> list[tuple[str, str, str]]:
    """Run ml.sync() so the typed per-model functions (e.g. ml.lead_score) exist; needs the bridge."""
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        return [tuple(map(str, row)) for row in conn.execute("SELECT * FROM ml.sync()").fetchall()]  # type: ignore[misc]


def database_settings(conn: psycopg.Connection, database: str) -> dict[str, str]:
    """The `ALTER DATABASE ... SET` values of `database` (for every role), name -> value."""
    rows = conn.execute(
        "SELECT unnest(s.setconfig) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
        "WHERE d.datname = %s AND s.setrole = 0",
        [database],
    ).fetchall()
    return dict(str(entry).split("=", 1) for (entry,) in rows)


def apply_database_settings(conn: psycopg.Connection, database: str, wanted: Mapping[str, str], report: Report) -> None:
    """ALTER DATABASE ... SET each setting that differs, and say so with the old and the new value."""
    current = database_settings(conn, database)
    for name, value in wanted.items():
        old = current.get(name)
        if old == value:
            report(f"database {database}: {name} = {value!r} (unchanged)")
            continue
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(database), sql.Identifier(*name.split(".")), sql.Literal(value)
            )
        )
        was = "not set" if old is None else repr(old)
        report(f"ALTER DATABASE {database} SET {name}: {was} -> {value!r}")


def _create_database(target: PostgresTarget, report: Report) -> None:
    with psycopg.connect(target.conninfo("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [target.database]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.database)))
            report(f"created database {target.database}")


def _create_extensions(conn: psycopg.Connection, report: Report) -> None:
    """plpython3u, then sqlml (what `CREATE EXTENSION sqlml CASCADE` does, spelled out)."""
    for extension in ("plpython3u", "sqlml"):
        present = conn.execute("SELECT 1 FROM pg_extension WHERE extname = %s", [extension]).fetchone()
        if not present:
            conn.execute(sql.SQL("CREATE EXTENSION {}").format(sql.Identifier(extension)))
            report(f"created extension {extension}")
