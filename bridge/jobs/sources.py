"""Read a job's training rows straight from the database as Arrow, with their lineage.

The bridge (or its worker process) connects to the database itself — PostgreSQL through psycopg,
a DuckDB file read-only — and never pulls rows through PL/Python. PostgreSQL rows come through a
server-side cursor in chunks, each chunk turned into one Arrow record batch with types taken from
the column type OIDs (so an all-NULL chunk keeps its type). Every read runs in a read-only
transaction, and the query is wrapped as a subquery, so a second statement is a syntax error
rather than a write.

`probe()` is the cheap check run before a job is accepted: the query compiles and runs, its
columns are known, and at least one row comes back. `read_table()` reads everything and returns
the lineage the manifest records: source, query, row count, columns, and a sha256 of the data.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from sqlml.bridge.jobs.spec import Source
from sqlml.errors import BadRequest

DEFAULT_PG_DSN = "host=127.0.0.1 port=5432 user=postgres"
CHUNK_ROWS = 50_000

# PostgreSQL type OIDs -> Arrow types; anything else is read as text.
_PG_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int64(),
    23: pa.int64(),
    700: pa.float64(),
    701: pa.float64(),
    1700: pa.float64(),  # numeric: models want floats, not decimals
    25: pa.string(),
    1043: pa.string(),
    1042: pa.string(),
    19: pa.string(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
}


@dataclass
class Dataset:
    """The rows of one job and where they came from."""

    table: pa.Table
    lineage: dict[str, Any] = field(default_factory=dict)


def postgres_dsn(source: Source) -> str:
    """The connection string for a PostgreSQL source.

    `ml.train` sends only the database name: the bridge connects to that database with its own
    credentials, from `SQLML_TRAIN_PG_DSN` (default `host=127.0.0.1 port=5432 user=postgres`), so
    no password ever travels through SQL. Give that role read access to the tables jobs read.
    """
    from psycopg.conninfo import make_conninfo

    if source.dsn:
        return source.dsn
    return make_conninfo(os.environ.get("SQLML_TRAIN_PG_DSN", DEFAULT_PG_DSN), dbname=source.database)


def probe(source: Source) -> dict[str, str]:
    """Column name -> Arrow type name of the query's result; raises if it fails or returns no rows."""
    if source.kind == "duckdb":
        schema, has_rows = _probe_duckdb(source)
    else:
        schema, has_rows = _probe_postgres(source)
    if not has_rows:
        raise BadRequest(
            "the training query returned no rows",
            hint="check its WHERE clause; a job needs at least a few rows of each class",
            detail={"query": source.query},
        )
    return {f.name: str(f.type) for f in schema}


def read_table(source: Source, chunk_rows: int = CHUNK_ROWS) -> Dataset:
    """Every row of the query as one Arrow table, plus lineage (rows, columns, sha256 of the data)."""
    started = time.perf_counter()
    batches = list(_duckdb_batches(source, chunk_rows) if source.kind == "duckdb" else _pg_batches(source, chunk_rows))
    if not batches:
        raise BadRequest("the training query returned no rows", detail={"query": source.query})
    table = pa.Table.from_batches(batches)
    lineage = {
        "source": source.describe(),
        "query": source.query,
        "rows": table.num_rows,
        "columns": table.column_names,
        "data_sha256": table_sha256(table),
        "read_seconds": round(time.perf_counter() - started, 3),
    }
    return Dataset(table=table, lineage=lineage)


def table_sha256(table: pa.Table) -> str:
    """sha256 of the table's Arrow IPC stream in one chunk (same rows in the same order, same hash)."""
    sink = pa.BufferOutputStream()
    combined = table.combine_chunks()
    with pa.ipc.new_stream(sink, combined.schema) as writer:
        writer.write_table(combined)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _subquery(query: str) -> str:
    # A trailing ';' is forgiven; anything after it stays inside the parentheses and fails to parse.
    body = query.strip().rstrip(";").strip()
    return f"SELECT * FROM (\n{body}\n) AS sqlml_training_rows"


def _query_failed(source: Source, exc: Exception) -> BadRequest:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BadRequest(
        f"the training query failed: {first_line}",
        hint="run it in psql or duckdb first; it must be one SELECT",
        detail={"query": source.query, "source": source.describe()},
    )


# -- PostgreSQL --------------------------------------------------------------------------------


def _pg_connect(source: Source) -> Any:
    import psycopg

    try:
        conn = psycopg.connect(postgres_dsn(source), connect_timeout=10)
    except psycopg.Error as exc:
        raise BadRequest(
            f"cannot connect to the training database: {str(exc).strip().splitlines()[0]}",
            hint="SQLML_TRAIN_PG_DSN sets the host and role the bridge reads with",
            detail={"source": source.describe()},
        ) from None
    conn.read_only = True
    return conn


def _probe_postgres(source: Source) -> tuple[pa.Schema, bool]:
    import psycopg

    with _pg_connect(source) as conn:
        try:
            with conn.cursor() as cursor:
                cursor.execute(f"{_subquery(source.query)} LIMIT 1")  # type: ignore[arg-type]
                row = cursor.fetchone()
                schema = _pg_schema(cursor.description or [])
        except psycopg.Error as exc:
            raise _query_failed(source, exc) from None
    return schema, row is not None


def _pg_schema(description: Any) -> pa.Schema:
    return pa.schema([pa.field(col.name, _PG_TYPES.get(col.type_code, pa.string())) for col in description])


def _pg_batches(source: Source, chunk_rows: int) -> Any:
    import psycopg

    with _pg_connect(source) as conn:
        try:
            # a named cursor is a server-side cursor: rows arrive chunk by chunk, never all at once
            with conn.cursor(name="sqlml_training_rows") as cursor:
                cursor.itersize = chunk_rows
                cursor.execute(_subquery(source.query))  # type: ignore[arg-type]
                schema: pa.Schema | None = None
                while rows := cursor.fetchmany(chunk_rows):
                    schema = schema or _pg_schema(cursor.description or [])
                    yield _rows_to_batch(rows, schema)
        except psycopg.Error as exc:
            raise _query_failed(source, exc) from None


def _rows_to_batch(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    columns = []
    for position, arrow_field in enumerate(schema):
        values = [_plain(row[position], arrow_field.type) for row in rows]
        columns.append(pa.array(values, type=arrow_field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _plain(value: Any, arrow_type: pa.DataType) -> Any:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value)
    if pa.types.is_string(arrow_type) and not isinstance(value, str):
        return str(value)
    if isinstance(value, datetime) and value.tzinfo is not None and arrow_type == pa.timestamp("us"):
        return value.replace(tzinfo=None)
    return value


# -- DuckDB ------------------------------------------------------------------------------------


def _duckdb_connect(source: Source) -> Any:
    import duckdb

    path = str(source.duckdb)
    if not os.path.exists(path):
        raise BadRequest(f"DuckDB file {path!r} does not exist", detail={"source": source.describe()})
    try:
        return duckdb.connect(path, read_only=True)
    except duckdb.Error as exc:
        raise BadRequest(f"cannot open DuckDB file {path!r}: {exc}", detail={"source": source.describe()}) from None


def _probe_duckdb(source: Source) -> tuple[pa.Schema, bool]:
    import duckdb

    con = _duckdb_connect(source)
    try:
        table = con.sql(f"{_subquery(source.query)} LIMIT 1").to_arrow_table()
    except duckdb.Error as exc:
        raise _query_failed(source, exc) from None
    finally:
        con.close()
    return table.schema, table.num_rows > 0


def _duckdb_batches(source: Source, chunk_rows: int) -> Any:
    import duckdb

    con = _duckdb_connect(source)
    try:
        yield from con.sql(_subquery(source.query)).to_arrow_reader(chunk_rows)
    except duckdb.Error as exc:
        raise _query_failed(source, exc) from None
    finally:
        con.close()
