"""Build the demo DuckDB database: tables `reviews`, `leads` and `power` from the packaged data sets.

The file is written once (into a temporary file renamed into place, so an interrupted build never
leaves a half database) and reused by later runs. Loaders are imported lazily: each pulls its own
dependencies and caches under `sqlml.config.data_dir()`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import duckdb
import pandas as pd

DEMO_TABLES = ("reviews", "leads", "power")
# Superset's DuckDB driver pins duckdb<2, which cannot read DuckDB 2's default storage format:
# write the demo file in a format both read.
STORAGE_COMPATIBILITY = "v1.0.0"


def _load_reviews() -> pd.DataFrame:
    from sqlml.data.reviews import load_reviews

    return load_reviews()


def _load_leads() -> pd.DataFrame:
    from sqlml.data.leads import load_leads

    return load_leads()


def _load_power() -> pd.DataFrame:
    from sqlml.data.power import load_power_hourly

    return load_power_hourly()


LOADERS: dict[str, Callable[[], pd.DataFrame]] = {
    "reviews": _load_reviews,
    "leads": _load_leads,
    "power": _load_power,
}


def missing_tables(path: Path) -> list[str]:
    """Demo tables the database file at `path` lacks (all of them if there is no file)."""
    if not path.exists():
        return list(DEMO_TABLES)
    with duckdb.connect(str(path), read_only=True) as con:
        present = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return [t for t in DEMO_TABLES if t not in present]


def build_demo_database(
    path: Path,
    rebuild: bool = False,
    log: Callable[[str], None] = print,
    loaders: Mapping[str, Callable[[], pd.DataFrame]] | None = None,
) -> Path:
    """Create the demo database at `path` unless it already holds every demo table.

    `loaders` replaces some of `LOADERS` (tests give a small synthetic `power`).
    """
    if not rebuild and not missing_tables(path):
        return path
    sources = {**LOADERS, **(loaders or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with duckdb.connect(str(staging), config={"storage_compatibility_version": STORAGE_COMPATIBILITY}) as con:
            for table, loader in sources.items():
                log(f"loading {table} ...")
                frame = loader()
                con.register("frame", frame)
                con.execute(f"CREATE TABLE {table} AS SELECT * FROM frame")
                con.unregister("frame")
            con.execute("CREATE INDEX IF NOT EXISTS leads_id ON leads (lead_id)")
        os.replace(staging, path)
    finally:
        for leftover in (staging, staging.with_name(staging.name + ".wal")):
            leftover.unlink(missing_ok=True)
    return path
