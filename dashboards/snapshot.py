"""The DuckDB file Superset reads: demo tables plus predictions frozen by sqlml, in a format DuckDB 1.x opens.

Superset's DuckDB driver (duckdb-engine with DuckDB 1.x, in Superset's own venv) can neither open
a file written in DuckDB 2.x's storage format nor call sqlml's UDFs, which live in sqlml's venv.
So sqlml writes a *scored snapshot*: it runs the real `ml.*` functions here (DuckDB 2.x, sqlml's
UDFs) and stores the results in a new file attached with `STORAGE_VERSION 'v1.4.0'`, which
DuckDB 1.1–1.5 read. The file also carries table macros named like the live functions, so a
dataset's SQL reads the same on the snapshot as on a live connection:

    SELECT * FROM ml.forecast('household_power', horizon := 48)

On the snapshot that returns the stored forecast (up to the horizon it was scored with);
`ml.snapshot_info` says which model versions produced it and when. PostgreSQL-backed datasets
call the models live through the extension instead.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

# The newest storage format the DuckDB 1.x in Superset's venv (1.5.x) reads; checked by the tests.
SNAPSHOT_STORAGE_VERSION = "v1.4.0"
FORECAST_MODEL = "household_power"
FORECAST_HORIZON = 48
FORECAST_QUANTILES = ("p10", "p50", "p90", "mean")
HISTORY_DAYS = 14
SNAPSHOT_ALIAS = "snapshot"


@dataclass(frozen=True)
class SnapshotSummary:
    path: Path
    tables: dict[str, int]  # table name -> row count


def _forecast_macro() -> str:
    # Parameter names shadow column names inside a DuckDB macro, hence the prefixed stored columns.
    default_quantiles = "[" + ", ".join(f"'{q}'" for q in FORECAST_QUANTILES[:3]) + "]"
    return (
        f"CREATE OR REPLACE MACRO ml.forecast(model, series := NULL, horizon := {FORECAST_HORIZON}, "
        f"quantiles := {default_quantiles}) AS TABLE "
        "SELECT stored_series AS series, stored_ts AS ts, stored_quantile AS quantile, stored_value AS value "
        "FROM ml.forecast_results "
        "WHERE stored_model = model AND (series IS NULL OR stored_series = series) "
        "AND stored_step <= horizon AND list_contains(quantiles, stored_quantile) "
        "ORDER BY stored_series, stored_ts, stored_quantile"
    )


def write_snapshot(
    con: duckdb.DuckDBPyConnection,
    target: Path,
    *,
    source_catalog: str = "demo",
    forecast_model: str = FORECAST_MODEL,
) -> SnapshotSummary:
    """Score with the `ml.*` functions registered on `con` and write the snapshot file atomically.

    `con` is a DuckDB 2.x connection on which `sqlml.udfs.register` ran and the demo database is
    attached as `source_catalog` (tables `power`, and `reviews`/`leads` when present).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    con.execute(f"ATTACH '{staging}' AS {SNAPSHOT_ALIAS} (STORAGE_VERSION '{SNAPSHOT_STORAGE_VERSION}')")
    try:
        _copy_history(con, source_catalog)
        _store_forecast(con, forecast_model)
        tables = _row_counts(con)
    finally:
        con.execute(f"DETACH {SNAPSHOT_ALIAS}")
    _add_macros(staging)
    # Superset may be reading the previous file: a rename swaps it without a half-written moment.
    os.replace(staging, target)
    return SnapshotSummary(path=target, tables=tables)


def _copy_history(con: duckdb.DuckDBPyConnection, source_catalog: str) -> None:
    con.execute(
        f"CREATE TABLE {SNAPSHOT_ALIAS}.main.power AS "
        f"SELECT ts, series, value FROM {source_catalog}.power "
        f"WHERE ts > (SELECT max(ts) FROM {source_catalog}.power) - INTERVAL {HISTORY_DAYS} DAY "
        "ORDER BY series, ts"
    )


def _store_forecast(con: duckdb.DuckDBPyConnection, forecast_model: str) -> None:
    quantiles = "[" + ", ".join(f"'{q}'" for q in FORECAST_QUANTILES) + "]"
    con.execute(f"CREATE SCHEMA {SNAPSHOT_ALIAS}.ml")
    con.execute(
        f"CREATE TABLE {SNAPSHOT_ALIAS}.ml.forecast_results AS "
        "SELECT ? AS stored_model, series AS stored_series, ts AS stored_ts, quantile AS stored_quantile, "
        "value AS stored_value, "
        "CAST(dense_rank() OVER (PARTITION BY series ORDER BY ts) AS INTEGER) AS stored_step "
        f"FROM ml.forecast(?, horizon := {FORECAST_HORIZON}, quantiles := {quantiles})",
        [forecast_model, forecast_model],
    )
    versions = _model_versions(con, forecast_model)
    con.execute(
        f"CREATE TABLE {SNAPSHOT_ALIAS}.ml.snapshot_info (model VARCHAR, version VARCHAR, "
        "horizon INTEGER, scored_at TIMESTAMPTZ, written_by VARCHAR)"
    )
    for name, version in versions or [(forecast_model, None)]:
        con.execute(
            f"INSERT INTO {SNAPSHOT_ALIAS}.ml.snapshot_info VALUES (?, ?, ?, now(), ?)",
            [name, None if version is None else str(version), FORECAST_HORIZON, f"duckdb {duckdb.__version__}"],
        )


def _model_versions(con: duckdb.DuckDBPyConnection, model: str) -> list[tuple[str, object]]:
    """Which version produced the stored rows, for `ml.snapshot_info` (best effort: lineage only)."""
    try:
        return [
            (str(name), version)
            for name, version in con.execute("SELECT name, version FROM ml.models() WHERE name = ?", [model]).fetchall()
        ]
    except duckdb.Error:
        return []


def _add_macros(path: Path) -> None:
    """Create the `ml.*` macros with the file as the main catalog, as Superset will open it.

    DuckDB binds a macro's body when it is created, and unqualified names must resolve in the
    snapshot itself. Opening an existing file keeps its storage version (checked by the tests).
    """
    con = duckdb.connect(str(path))
    try:
        con.execute(_forecast_macro())
    finally:
        con.close()


def _row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows = con.execute(
        "SELECT schema_name || '.' || table_name, estimated_size FROM duckdb_tables() WHERE database_name = ?",
        [SNAPSHOT_ALIAS],
    ).fetchall()
    counts: dict[str, int] = {}
    for name, _estimate in rows:
        result = con.execute(f"SELECT count(*) FROM {SNAPSHOT_ALIAS}.{name}").fetchone()
        counts[str(name)] = int(result[0]) if result else 0
    return counts
