"""Read a job's training rows as Arrow, with their lineage, from the only places a job may read.

A source is one of three kinds, and each is opened so that a `train` token cannot reach beyond
the rows it names:

- **dsn**: a PostgreSQL connection string with the client's own credentials. The bridge never
  adds credentials of its own (no password file, no Kerberos ticket) and refuses a session whose
  role is a superuser or may read or write server files or run programs. Rows come through a
  server-side cursor in chunks, in a read-only transaction.
- **duckdb**: a file under one of the bridge's `train_roots` (after `os.path.realpath`, so a
  symlink or `..` cannot leave them), opened read-only with external access off and the
  configuration locked: no other file, no network, no extension, no `ATTACH`, no `COPY`.
- **upload**: rows the client sent to `POST /v1/uploads` (`sqlml.bridge.jobs.uploads`).

The query is wrapped as a subquery and must be one SELECT. An error message never carries source
data: quoted literals become '…' (`quiet_error`) and the length is bounded.

`probe()` is the cheap check run before a job is accepted: the query compiles and runs, its
columns are known, and at least one row comes back. `read_table()` reads everything and returns
the lineage the manifest records: source, query, row count, columns, and a sha256 of the data.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sqlml.bridge.jobs.spec import Source
from sqlml.errors import BadRequest, Forbidden

if TYPE_CHECKING:
    from sqlml.bridge.jobs.uploads import UploadStore

CHUNK_ROWS = 50_000
MAX_ERROR_CHARS = 300

NO_PASSFILE = "/nonexistent/sqlml-no-passfile"  # libpq ignores a missing password file

# PostgreSQL type OIDs -> Arrow types (of query results and of upload columns); others are text.
PG_TYPES: dict[int, pa.DataType] = {
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

# Roles whose members can read or write the server's files or run programs: never read with one.
PRIVILEGED_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")

# libpq options a client DSN may set; the others (passfile, service, sslkey, ...) name files or
# credentials on the bridge's host.
# No `options`: it would let the client set the session's search_path (or any setting) before the
# bridge checks who the session is.
DSN_KEYS = frozenset(
    {"host", "hostaddr", "port", "dbname", "user", "password", "connect_timeout", "application_name",
     "sslmode", "target_session_attrs", "keepalives", "keepalives_idle"}
)  # fmt: skip

# Every DuckDB training connection: read-only, no file system or network beyond the opened file,
# no extension loading, no replacement scans of the bridge's Python objects, settings locked.
DUCKDB_CONFIG: dict[str, Any] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "python_enable_replacements": False,
    "lock_configuration": True,
}

# Quoted text in a database error, which may be a value from the data: 'single-quoted' anywhere
# (an unterminated quote runs to the end), and "double-quoted" after `: `, `string ` or `value `
# (PostgreSQL's `invalid input syntax for type integer: "x"`, DuckDB's `Could not convert string "x"`).
_SINGLE_QUOTED = re.compile(r"'(?:[^']|'')*(?:'|$)")
_DOUBLE_QUOTED_VALUE = re.compile(r'(?:(?<=: )|(?<=ing )|(?<=lue ))"(?:[^"]|"")*(?:"|$)')


@dataclass(frozen=True)
class SourceRules:
    """What jobs may read on this bridge: DuckDB files under `train_roots`, uploads in `uploads`."""

    train_roots: tuple[str, ...]
    uploads: UploadStore


@dataclass
class Dataset:
    """The rows of one job and where they came from."""

    table: pa.Table
    lineage: dict[str, Any] = field(default_factory=dict)


def probe(source: Source, rules: SourceRules) -> dict[str, str]:
    """Column name -> Arrow type name of the query's result; raises if it fails or returns no rows."""
    if source.kind == "duckdb":
        schema, has_rows = _probe_duckdb(source, rules)
    elif source.kind == "upload":
        schema, has_rows = rules.uploads.schema(str(source.upload)), rules.uploads.rows(str(source.upload)) > 0
    else:
        schema, has_rows = _probe_postgres(source)
    if not has_rows:
        raise BadRequest(
            "the training query returned no rows",
            hint="check its WHERE clause; a job needs at least a few rows of each class",
            detail={"query": source.query},
        )
    return {f.name: str(f.type) for f in schema}


def read_table(source: Source, rules: SourceRules, chunk_rows: int = CHUNK_ROWS) -> Dataset:
    """Every row of the query as one Arrow table, plus lineage (rows, columns, sha256 of the data)."""
    started = time.perf_counter()
    batches = list(_batches(source, rules, chunk_rows))
    if not batches or not sum(batch.num_rows for batch in batches):
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


def _batches(source: Source, rules: SourceRules, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    if source.kind == "duckdb":
        return _duckdb_batches(source, rules, chunk_rows)
    if source.kind == "upload":
        return rules.uploads.batches(str(source.upload))
    return _pg_batches(source, chunk_rows)


def table_sha256(table: pa.Table) -> str:
    """sha256 of the table's Arrow IPC stream in one chunk (same rows in the same order, same hash)."""
    sink = pa.BufferOutputStream()
    combined = table.combine_chunks()
    with pa.ipc.new_stream(sink, combined.schema) as writer:
        writer.write_table(combined)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def quiet_error(exc: BaseException) -> str:
    """The first line of a database error with every quoted value replaced by '…', at most 300 chars.

    The kind stays (`Conversion Error: Could not convert string '…' to INT32`, `invalid input
    syntax for type integer: '…'`); the value, which may be a secret from the data, does not.
    """
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    quiet = _DOUBLE_QUOTED_VALUE.sub("'…'", _SINGLE_QUOTED.sub("'…'", first))
    return quiet if len(quiet) <= MAX_ERROR_CHARS else quiet[: MAX_ERROR_CHARS - 1] + "…"


def _body(query: str) -> str:
    # A trailing ';' is forgiven; anything after it stays inside the parentheses and fails to parse.
    return query.strip().rstrip(";").strip()


def _subquery(query: str) -> str:
    return f"SELECT * FROM (\n{_body(query)}\n) AS sqlml_training_rows"


def _query_failed(source: Source, exc: BaseException) -> BadRequest:
    # no query in the detail: the failure may be caused by the data, and the caller has the query
    return BadRequest(
        f"the training query failed: {quiet_error(exc)}",
        hint="run it in psql or duckdb first; it must be one SELECT",
        detail={"source": source.describe()},
    )


# -- PostgreSQL --------------------------------------------------------------------------------


def postgres_dsn(source: Source) -> str:
    """The client's connection string, limited to `DSN_KEYS`, with nothing of the bridge's added.

    No password file (`passfile` points nowhere) and no GSSAPI/SSPI, so a role that would log in
    with the bridge's own credentials is not reachable; only what the DSN itself carries is.
    """
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        parts = conninfo_to_dict(str(source.dsn))
    except Exception:
        raise BadRequest("the dsn is not a PostgreSQL connection string", detail={"field": "source.dsn"}) from None
    refused = sorted(set(parts) - DSN_KEYS)
    if refused:
        raise Forbidden(
            f"the dsn may not set {', '.join(refused)}",
            hint=f"allowed: {', '.join(sorted(DSN_KEYS))}",
            detail={"refused": refused},
        )
    return make_conninfo("", **parts, passfile=NO_PASSFILE, gssencmode="disable", require_auth="!gss,!sspi")


def _pg_connect(source: Source) -> Any:
    import psycopg

    try:
        conn = psycopg.connect(postgres_dsn(source), connect_timeout=10)
    except psycopg.Error:
        # One message for every way a connection fails: the server's words (refused, timed out, no
        # such role) would make a dsn a probe of the bridge's network.
        raise BadRequest(
            "cannot connect to the training database",
            hint="check the dsn's host, port, database, role and password (with psql, from the bridge's host)",
            detail={"source": source.describe()},
        ) from None
    conn.read_only = True
    try:
        _refuse_privileged_role(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _refuse_privileged_role(conn: Any) -> None:
    """403 when the session's role is, or may become, a superuser or a server-file/program role.

    The session's search_path is pinned first and every name is qualified: a schema of the role's
    (or its own `ALTER ROLE ... SET search_path`) cannot shadow the catalog this check reads."""
    conn.execute("SET search_path = pg_catalog, pg_temp")
    row = conn.execute(
        "SELECT session_user::pg_catalog.text,"
        " pg_catalog.current_setting('is_superuser') OPERATOR(pg_catalog.=) 'on',"
        " ARRAY(SELECT r.rolname::pg_catalog.text FROM pg_catalog.pg_roles r"
        "       WHERE (r.rolsuper OR r.rolname OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.text[]))"
        "         AND r.rolname OPERATOR(pg_catalog.<>) session_user"
        "         AND pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER')"
        "       ORDER BY r.rolname)",
        [list(PRIVILEGED_ROLES)],
    ).fetchone()
    conn.execute("RESET search_path")  # the client's own query resolves its names as the role would
    role, superuser, powers = row[0], row[1], list(row[2] or [])
    if superuser or powers:
        what = "a superuser" if superuser else f"a member of {', '.join(powers)}"
        raise Forbidden(
            f'the training source connects as role "{role}", which is {what}',
            hint="connect as an ordinary role granted SELECT on the tables training reads",
            detail={"role": role},
        )


def _probe_postgres(source: Source) -> tuple[pa.Schema, bool]:
    import psycopg

    with _pg_connect(source) as conn:
        try:
            # a named cursor is a server-side cursor: one statement only, rows on demand
            with conn.cursor(name="sqlml_training_probe") as cursor:
                cursor.execute(f"{_subquery(source.query)} LIMIT 1")
                row = cursor.fetchone()
                schema = _pg_schema(cursor.description or [])
        except psycopg.Error as exc:
            raise _query_failed(source, exc) from None
    return schema, row is not None


def _pg_schema(description: Any) -> pa.Schema:
    return pa.schema([pa.field(col.name, arrow_type_of_oid(col.type_code)) for col in description])


def arrow_type_of_oid(oid: int) -> pa.DataType:
    """The Arrow type training reads a PostgreSQL type as (`PG_TYPES`; others as text)."""
    return PG_TYPES.get(oid, pa.string())


def _pg_batches(source: Source, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    import psycopg

    with _pg_connect(source) as conn:
        try:
            with conn.cursor(name="sqlml_training_rows") as cursor:
                cursor.itersize = chunk_rows
                cursor.execute(_subquery(source.query))
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


def allowed_duckdb_path(path: str, roots: Sequence[str]) -> str:
    """The real path of `path` when it lies under one of `roots` (both resolved); else 403."""
    real = os.path.realpath(path)
    for root in roots:
        real_root = os.path.realpath(root)
        if os.path.commonpath([real, real_root]) == real_root:
            return real
    raise Forbidden(
        f"DuckDB file {path!r} is outside the folders training may read",
        hint="the bridge setting train_roots (SQLML_TRAIN_ROOTS, comma-separated; default $SQLML_HOME) lists them",
        detail={"setting": "train_roots", "train_roots": list(roots)},
    )


def _duckdb_connect(source: Source, rules: SourceRules) -> Any:
    import duckdb

    path = allowed_duckdb_path(str(source.duckdb), rules.train_roots)
    if not os.path.isfile(path):
        raise BadRequest(f"DuckDB file {source.duckdb!r} does not exist", detail={"source": source.describe()})
    try:
        con = duckdb.connect(path, read_only=True, config=DUCKDB_CONFIG)
    except duckdb.Error as exc:
        message = f"cannot open DuckDB file {source.duckdb!r}: {quiet_error(exc)}"
        raise BadRequest(message, detail={"source": source.describe()}) from None
    try:
        _one_select(con, source)
    except BaseException:
        con.close()
        raise
    return con


def _one_select(con: Any, source: Source) -> None:
    import duckdb

    try:
        statements = con.extract_statements(_body(source.query))
    except duckdb.Error as exc:
        raise _query_failed(source, exc) from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise BadRequest(
            "the training query must be one SELECT statement",
            hint="no ATTACH, COPY, SET, INSTALL or second statement",
            detail={"source": source.describe(), "statements": len(statements)},
        )


def _probe_duckdb(source: Source, rules: SourceRules) -> tuple[pa.Schema, bool]:
    import duckdb

    con = _duckdb_connect(source, rules)
    try:
        table = con.sql(f"{_subquery(source.query)} LIMIT 1").to_arrow_table()
    except duckdb.Error as exc:
        raise _query_failed(source, exc) from None
    finally:
        con.close()
    return table.schema, table.num_rows > 0


def _duckdb_batches(source: Source, rules: SourceRules, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    import duckdb

    con = _duckdb_connect(source, rules)
    try:
        yield from con.sql(_subquery(source.query)).to_arrow_reader(chunk_rows)
    except duckdb.Error as exc:
        raise _query_failed(source, exc) from None
    finally:
        con.close()
