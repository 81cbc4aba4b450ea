"""`ml.train`, `ml.job`, `ml.jobs` and `ml.sync` on DuckDB: training from a query on this connection.

`ml.train(model, task, query, target, params := '{}', backend := 'local', promote := 'if_better')`
takes PostgreSQL's parameters and names. The query runs on a cursor of the caller's connection (a
second connection to the same database, in the caller's current catalog and schema): code inside a
query cannot use that query's connection, and the cursor deadlocks nothing. It therefore sees what
is committed in the database, not the caller's TEMP tables, views registered from Python with
`con.register()` or an open transaction's changes. Its rows arrive as Arrow record batches, a chunk
at a time, and become the same upload rows PostgreSQL's `ml.train` sends (columns declared by
PostgreSQL type OID, values as `row_to_json` writes them), so the same table trains the same model
on either engine.

- Through a bridge (`BridgeClient`): the chunks go to `POST /v1/uploads`, the job to `POST /v1/jobs`,
  and `ml.train` returns the job id at once; `ml.job(id)` follows it.
- Embedded (`LocalClient`): the chunks go to an upload store next to the local job store
  (`$SQLML_HOME/jobs/`, `SQLML_JOBS_DB` moves it) and the job runs here, in this process, through
  the jobs' own runner (checks, trainer, publish, promotion); `ml.train` returns when it is done.

Either way a finished job's model gets its typed macro (`ml.<model>(...)`) on this connection:
embedded at the end of `ml.train`, through a bridge when `ml.job(id)` first sees it succeeded, and
always with `ml.sync()`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from sqlml.bridge.client import LocalClient, ModelClient
from sqlml.bridge.http_client import BridgeClient
from sqlml.bridge.jobs.spec import parse_spec
from sqlml.bridge.registry import Registry
from sqlml.errors import BadRequest, NotSupported, TrainingError, close_names

ArrowUdf = Callable[..., pa.Array]
CHUNK_ROWS = 5_000  # rows read from DuckDB at a time, and sent in one request at most
MAX_REQUEST_BYTES = 4_000_000  # a chunk whose JSON is bigger is sent in halves
SPEC_OPTIONS = ("features", "resources", "metric", "alias")  # spec fields that may ride in params
# What an upload's columns are declared as, by PostgreSQL type OID (sqlml.bridge.jobs.sources.PG_TYPES).
BOOL, INT8, FLOAT8, NUMERIC, TEXT, DATE, TIMESTAMP, TIMESTAMPTZ = 16, 20, 701, 1700, 25, 1082, 1114, 1184

JOB_ROW_TYPE = pa.struct(
    [
        pa.field("id", pa.string()),
        pa.field("model", pa.string()),
        pa.field("task", pa.string()),
        pa.field("backend", pa.string()),
        pa.field("state", pa.string()),
        pa.field("progress", pa.float64()),
        pa.field("message", pa.string()),
        pa.field("version", pa.int32()),
        pa.field("promoted", pa.bool_()),
        pa.field("metrics", pa.map_(pa.string(), pa.float64())),
        pa.field("error", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("finished_at", pa.timestamp("us", tz="UTC")),
    ]
)
SYNC_ROW_TYPE = pa.struct(
    [pa.field("model", pa.string()), pa.field("function", pa.string()), pa.field("action", pa.string())]
)
log = logging.getLogger("sqlml.udfs")


# -- where jobs go: a bridge, or this process --------------------------------------------------


class Jobs(Protocol):
    def upload(self, columns: list[dict[str, Any]], chunks: Iterator[list[dict[str, Any]]]) -> tuple[str, int]:
        """Send the rows; returns (upload id, rows sent)."""
        ...

    def discard(self, upload_id: str) -> None: ...

    def submit(self, spec: dict[str, Any]) -> str:
        """Start the job; returns its id."""
        ...

    def job(self, job_id: str) -> dict[str, Any]:
        """The job as `GET /v1/jobs/{id}` answers it."""
        ...

    def jobs(self, limit: int) -> list[dict[str, Any]]: ...


class BridgeJobs:
    """Jobs on a bridge: the rows as an upload, the job through `POST /v1/jobs`."""

    def __init__(self, client: BridgeClient):
        self.client = client

    def upload(self, columns: list[dict[str, Any]], chunks: Iterator[list[dict[str, Any]]]) -> tuple[str, int]:
        upload_id = str(self.client.request_json("POST", "/v1/uploads", json={"columns": columns})["id"])
        sent = 0
        for rows in chunks:
            for part in _parts(rows):
                body = json.dumps({"rows": part}, allow_nan=False).encode()
                headers = {"Content-Type": "application/json"}
                sent = int(self.client.request_json("POST", f"/v1/uploads/{upload_id}/rows", content=body,
                                                    headers=headers)["rows"])  # fmt: skip
        return upload_id, sent

    def discard(self, upload_id: str) -> None:
        """Nothing to do: the bridge sweeps an upload no job took after an hour."""

    def submit(self, spec: dict[str, Any]) -> str:
        return str(self.client.request_json("POST", "/v1/jobs", json=spec)["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return self.client.request_json("GET", f"/v1/jobs/{_quoted(job_id)}")

    def jobs(self, limit: int) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = self.client.request_json("GET", "/v1/jobs", params={"limit": limit})["jobs"]
        return jobs


def _parts(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The chunk, halved until each part's JSON is under MAX_REQUEST_BYTES (wide rows)."""
    if len(rows) > 1 and len(json.dumps(rows[: max(1, len(rows) // 10)])) * 10 > MAX_REQUEST_BYTES:
        middle = len(rows) // 2
        yield from _parts(rows[:middle])
        yield from _parts(rows[middle:])
    else:
        yield rows


def _quoted(job_id: str) -> str:
    from urllib.parse import quote

    return quote(job_id, safe="")


class LocalJobs:
    """Jobs in this process (embedded mode): the jobs' own store, uploads and runner, with a launcher
    that runs the job right here instead of in a worker subprocess."""

    def __init__(self, registry: Registry, jobs_db: str | os.PathLike[str] | None = None):
        from sqlml.bridge.jobs.runner import JobManager, source_rules
        from sqlml.bridge.jobs.store import JobStore

        self.store = JobStore(jobs_db or os.environ.get("SQLML_JOBS_DB") or None)
        rules = source_rules(self.store, train_roots=())  # an embedded job reads its upload, nothing else
        self.manager = JobManager(self.store, registry, InProcessLauncher(self.store, registry, rules), rules)

    def upload(self, columns: list[dict[str, Any]], chunks: Iterator[list[dict[str, Any]]]) -> tuple[str, int]:
        from sqlml.bridge.jobs.uploads import UploadColumn

        uploads = self.manager.uploads
        upload_id = uploads.create([UploadColumn.model_validate(c) for c in columns])
        sent = 0
        try:
            for rows in chunks:
                sent = uploads.append(upload_id, rows)
        except BaseException:
            uploads.remove(upload_id)
            raise
        return upload_id, sent

    def discard(self, upload_id: str) -> None:
        self.manager.uploads.remove(upload_id)

    def submit(self, spec: dict[str, Any]) -> str:
        record = self.manager.submit(spec)
        if record.state != "succeeded":
            raise TrainingError(
                f"training job {record.id} {record.state}: {record.error or record.message}",
                hint=f"SELECT * FROM ml.job('{record.id}') shows it; its log is {record.log_path}",
                detail={"job": record.id},
            )
        return record.id

    def job(self, job_id: str) -> dict[str, Any]:
        return self.manager.get(job_id).summary()

    def jobs(self, limit: int) -> list[dict[str, Any]]:
        return [record.summary() for record in self.store.list(limit=limit)]


class InProcessLauncher:
    """Runs a job to its end in the calling thread (`sqlml.bridge.jobs.runner.execute`), its log in
    the job's log file; a failure is recorded on the job, as the worker process records it."""

    def __init__(self, store: Any, registry: Registry, rules: Any):
        self.store = store
        self.registry = registry
        self.rules = rules

    def start(self, job_id: str) -> int:
        from sqlml.bridge.jobs.runner import execute, failure_message

        with _job_log(self.store.get(job_id).log_path):
            try:
                execute(job_id, self.store, self.registry, self.rules)
            except BaseException as exc:  # an interrupt too: the job must not stay "running"
                log.info("job %s failed: %s", job_id, failure_message(exc))
                self.store.finish(job_id, "failed", error=failure_message(exc), message="failed")
                if not isinstance(exc, Exception):
                    raise
            finally:
                _shutdown_ray()
        return os.getpid()

    def cancel(self, job_id: str, pid: int | None) -> None:
        """Nothing runs in the background: a job is over when ml.train returns."""


@contextmanager
def _job_log(path: str) -> Iterator[None]:
    jobs_log = logging.getLogger("sqlml.jobs")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = jobs_log.level
    jobs_log.addHandler(handler)
    jobs_log.setLevel(logging.INFO)
    try:
        yield
    finally:
        jobs_log.removeHandler(handler)
        jobs_log.setLevel(level)
        handler.close()


def _shutdown_ray() -> None:
    import sys

    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()


def jobs_for(client: ModelClient) -> Jobs:
    if isinstance(client, BridgeClient):
        return BridgeJobs(client)
    if isinstance(client, LocalClient):
        return LocalJobs(client.registry)
    raise NotSupported(
        "ml.train needs embedded mode or a bridge client",
        hint="sqlml.udfs.register(con) (embedded) or register(con, BridgeClient(url))",
    )


# -- the rows: DuckDB's Arrow as upload rows ---------------------------------------------------


def pg_type_of(arrow_type: pa.DataType) -> int:
    """The PostgreSQL type OID an upload declares a DuckDB column as (what PostgreSQL would send)."""
    if pa.types.is_dictionary(arrow_type):  # ENUM
        return pg_type_of(arrow_type.value_type)
    if pa.types.is_boolean(arrow_type):
        return BOOL
    if pa.types.is_integer(arrow_type):
        return NUMERIC if arrow_type == pa.uint64() else INT8
    if pa.types.is_floating(arrow_type):
        return FLOAT8
    if pa.types.is_decimal(arrow_type):
        return NUMERIC
    if pa.types.is_date(arrow_type):
        return DATE
    if pa.types.is_timestamp(arrow_type):
        return TIMESTAMPTZ if arrow_type.tz else TIMESTAMP
    return TEXT


def upload_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The batch's rows as `row_to_json` writes them: ISO dates, numbers, 'NaN', nested values as JSON text."""
    names = batch.schema.names
    columns = [_values(batch.column(i)) for i in range(batch.num_columns)]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _values(array: pa.Array) -> list[Any]:
    kind = array.type
    if pa.types.is_dictionary(kind):
        return _values(array.dictionary_decode())
    values: list[Any] = array.to_pylist()
    code = pg_type_of(kind)
    if code in (BOOL, INT8) or pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return values
    if code in (NUMERIC, FLOAT8):
        return [_number(v) for v in values]
    if code in (DATE, TIMESTAMP, TIMESTAMPTZ):
        return [None if v is None else v.isoformat() for v in values]
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return [None if v is None else "\\x" + bytes(v).hex() for v in values]
    if pa.types.is_string_view(kind):
        return values
    nested = pa.types.is_nested(kind)
    return [None if v is None else json.dumps(v, default=str) if nested else str(v) for v in values]


def _number(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value if isinstance(value, float) else float(value)


class TrainingQuery:
    """The caller's query on a cursor of its connection: its columns, then its rows in chunks."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection, query: str, catalog: str | None, schema: str | None):
        self.body = query.strip().rstrip(";").strip()
        self.cursor = cursor
        try:
            if catalog and schema:  # the caller's USE, which a new cursor does not inherit
                cursor.execute(f"USE {_ident(catalog)}.{_ident(schema)}")
            statements = cursor.extract_statements(self.body)
        except duckdb.Error as exc:
            raise _query_failed(exc) from None
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise BadRequest(
                "the training query must be one SELECT statement",
                hint="no second statement, and no CREATE, INSERT, COPY or SET",
                detail={"statements": len(statements)},
            )
        try:
            self.relation = cursor.sql(f"SELECT * FROM (\n{self.body}\n) AS sqlml_training_rows")
        except duckdb.Error as exc:
            raise _query_failed(exc) from None
        self.columns = list(self.relation.columns)

    def upload_columns(self, reader: pa.RecordBatchReader) -> list[dict[str, Any]]:
        return [{"name": f.name, "pg_type": pg_type_of(f.type)} for f in reader.schema]

    def reader(self) -> pa.RecordBatchReader:
        try:
            return self.relation.to_arrow_reader(CHUNK_ROWS)
        except duckdb.Error as exc:
            raise _query_failed(exc) from None

    def chunks(self, reader: pa.RecordBatchReader) -> Iterator[list[dict[str, Any]]]:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (duckdb.Error, pa.ArrowException) as exc:
                raise _query_failed(exc) from None
            if batch.num_rows:
                yield upload_rows(batch)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _query_failed(exc: BaseException) -> BadRequest:
    from sqlml.bridge.jobs.sources import quiet_error

    text = quiet_error(exc)
    hint = "run it in DuckDB first; it must be one SELECT"
    if "does not exist" in text:
        hint = (
            "ml.train reads the query on its own cursor of this database: it sees tables and views, "
            "not TEMP tables, Python objects registered with con.register() or uncommitted changes"
        )
    return BadRequest(f"the training query failed: {text}", hint=hint)


# -- the UDFs ------------------------------------------------------------------------------------


class Connection(Protocol):
    """What the training UDFs need of the registered functions (udfs.duckdb_functions.SqlFunctions)."""

    client: ModelClient

    def cursor(self) -> duckdb.DuckDBPyConnection: ...

    def sync_in_query(self) -> dict[str, str]: ...


def train(functions: Connection) -> ArrowUdf:
    """`__sqlml_train(model, task, query, target, params, backend, promote, catalog, schema)`: the job id."""

    def run(
        model: pa.ChunkedArray,
        task: pa.ChunkedArray,
        query: pa.ChunkedArray,
        target: pa.ChunkedArray,
        params: pa.ChunkedArray,
        backend: pa.ChunkedArray,
        promote: pa.ChunkedArray,
        catalog: pa.ChunkedArray,
        schema: pa.ChunkedArray,
    ) -> pa.Array:
        columns = (model, task, query, target, params, backend, promote, catalog, schema)
        results = [train_one(functions, *row) for row in zip(*(c.to_pylist() for c in columns), strict=True)]
        return pa.array(results, pa.string())

    return run


def train_one(
    functions: Connection,
    model: str | None,
    task: str | None,
    query: str | None,
    target: str | None,
    params: str | None,
    backend: str | None,
    promote: str | None,
    catalog: str | None = None,
    schema: str | None = None,
) -> str:
    for name, value in (("model", model), ("task", task), ("query", query), ("target", target)):
        if value is None:
            raise BadRequest(
                f"{name} must not be NULL", hint="ml.train(model, task, query, target [, params, backend, promote])"
            )
    assert model is not None and task is not None and query is not None and target is not None
    spec = job_spec(model, task, query, target, params, backend, promote)
    jobs = jobs_for(functions.client)
    cursor = functions.cursor()
    try:
        rows = TrainingQuery(cursor, query, catalog, schema)
        if target not in rows.columns:
            close = close_names(target, rows.columns)
            raise BadRequest(
                f'the query has no column "{target}" (the target)',
                hint=f"did you mean {', '.join(map(repr, close))}?"
                if close
                else f"columns: {', '.join(rows.columns[:20])}",
                detail={"column": target, "columns": rows.columns},
            )
        reader = rows.reader()
        upload_id, sent = jobs.upload(rows.upload_columns(reader), rows.chunks(reader))
    finally:
        cursor.close()
    if not sent:
        jobs.discard(upload_id)
        raise BadRequest("the training query returned no rows", hint="check its WHERE clause")
    log.info("sqlml: sent %d training rows for %s", sent, model)
    spec["source"] = {"upload": upload_id, "query": rows.body, "origin": f"duckdb database {catalog or 'memory'}"}
    try:
        job_id = jobs.submit(spec)
    except BaseException:
        jobs.discard(upload_id)
        raise
    if isinstance(jobs, LocalJobs):  # done already: the model's typed macro, now
        functions.sync_in_query()
    return job_id


def job_spec(
    model: str, task: str, query: str, target: str, params: str | None, backend: str | None, promote: str | None
) -> dict[str, Any]:
    """The job spec `ml.train` sends, checked for shape before any row is read (unknown task, bad
    backend or promote, bad params JSON)."""
    try:
        options = json.loads(params) if params else {}
    except json.JSONDecodeError as exc:
        raise BadRequest(f"params is not valid JSON: {exc.msg}", hint="""e.g. '{"n_estimators": 200}'""") from None
    if not isinstance(options, dict):
        raise BadRequest("params must be a JSON object", hint="""e.g. '{"n_estimators": 200}'""")
    spec: dict[str, Any] = {
        "model": model,
        "task": task,
        "target": target,
        "params": options,
        "backend": backend or "local",
        "promote": promote or "if_better",
    }
    for key in SPEC_OPTIONS:
        if key in options:
            spec[key] = options.pop(key)
    parse_spec({**spec, "source": {"upload": "0" * 32, "query": query}})  # shape only; raises BadRequest
    return spec


def job(functions: Connection) -> ArrowUdf:
    """`__sqlml_job(id)`: the job as one row (a list of one struct); a job that succeeded gets its
    model's typed macro on this connection."""

    def run(ids: pa.ChunkedArray) -> pa.Array:
        jobs = jobs_for(functions.client)
        results: list[list[dict[str, Any]] | None] = []
        for job_id in ids.to_pylist():
            if job_id is None:
                results.append(None)
                continue
            summary = jobs.job(str(job_id))
            if summary.get("state") == "succeeded":
                functions.sync_in_query()
            results.append([job_row(summary)])
        return pa.array(results, pa.list_(JOB_ROW_TYPE))

    return run


def jobs_listing(functions: Connection, limit: int = 100) -> ArrowUdf:
    """`__sqlml_jobs()`: the latest jobs, newest first."""

    def run() -> pa.Array:
        rows = [job_row(summary) for summary in jobs_for(functions.client).jobs(limit)]
        return pa.array([rows], pa.list_(JOB_ROW_TYPE))

    return run


def sync(functions: Connection) -> ArrowUdf:
    """`__sqlml_sync()`: (model, function, action) for every model the client lists."""

    def run() -> pa.Array:
        changes = functions.sync_in_query()
        rows = [{"model": m, "function": f"ml.{m}", "action": a} for m, a in sorted(changes.items())]
        return pa.array([rows], pa.list_(SYNC_ROW_TYPE))

    return run


def job_row(summary: dict[str, Any]) -> dict[str, Any]:
    spec = summary.get("spec") or {}
    return {
        "id": summary["id"],
        "model": spec.get("model"),
        "task": spec.get("task"),
        "backend": spec.get("backend"),
        "state": summary.get("state"),
        "progress": summary.get("progress"),
        "message": summary.get("message"),
        "version": summary.get("version"),
        "promoted": summary.get("promoted"),
        "metrics": list((summary.get("metrics") or {}).items()),
        "error": summary.get("error"),
        "created_at": _time(summary.get("created_at")),
        "finished_at": _time(summary.get("finished_at")),
    }


def _time(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text)
