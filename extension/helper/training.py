"""ml.train: the caller's rows, read with the caller's rights, sent to the bridge as an upload.

ml.train is SECURITY INVOKER: it reads the training query through a cursor as the caller, so the
rows are exactly those the caller may SELECT, whatever the query calls. The rows go to the bridge
as an upload through two SECURITY DEFINER steps that can read the token but read no data
(ml._train_upload, ml._train_upload_rows), and the job through a third (ml._submit_job), which sends
only uploads this session's ml.train filled.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .model_names import check_plain_name
from .plpy_api import Plpy, prepared
from .query_text import check_query
from .sql_errors import BridgeError, spi_errors_reported
from .sql_function import SqlCall, bridge_function, sql_function

UPLOAD_ROWS_PER_FETCH = 1_000
UPLOAD_BYTES_PER_REQUEST = 4_000_000
UPLOAD_ID = re.compile(r"[0-9a-f]{32}\Z")
# Uploads this session's ml.train filled, with the lineage it read them under (upload id -> source).
_trained_uploads: dict[str, dict[str, str]] = {}
SPEC_OPTIONS = ("features", "resources", "metric", "alias")


@sql_function
def train(
    call: SqlCall,
    model: str,
    task: str,
    query: str,
    target: str,
    params: str | None,
    backend: str | None,
    promote: str | None,
) -> str:
    """ml.train(...): send the query's rows and a job spec to the bridge; returns the job id."""
    plpy = call.plpy
    for name, value in (("model", model), ("task", task), ("query", query), ("target", target)):
        if value is None:
            raise BridgeError(
                "bad_request",
                f"{name} must not be NULL",
                hint="ml.train(model, task, query, target [, params, backend, promote])",
            )
    check_plain_name(model)
    body = check_query(query, "ml.train")
    options = json.loads(params) if params else {}
    if not isinstance(options, dict):
        raise BridgeError("bad_request", "params must be a jsonb object", hint="""e.g. '{"n_estimators": 200}'""")
    rows_sql = f"SELECT * FROM (\n{body}\n) AS sqlml_training_rows"
    with spi_errors_reported(plpy):
        shape = plpy.execute(rows_sql + " LIMIT 0")
        columns: list[dict[str, Any]] = [
            {"name": n, "pg_type": int(t)} for n, t in zip(shape.colnames(), shape.coltypes(), strict=True)
        ]
    if target not in {c["name"] for c in columns}:
        names = ", ".join(c["name"] for c in columns[:20])
        raise BridgeError("bad_request", f'the query has no column "{target}" (the target)', hint=names)
    upload_id = _send_rows(plpy, rows_sql, columns)
    origin = plpy.execute(
        "SELECT pg_catalog.format('postgres database %s as role %s', pg_catalog.current_database(), current_user) AS o"
    )[0]["o"]
    # What ml._submit_job will send as lineage: recorded here, where the rows were read as the
    # caller, in this session's module state (only PL/Python code can write it), never taken
    # from the spec a direct caller of ml._submit_job could write.
    _trained_uploads[upload_id] = {"query": body, "origin": origin}
    spec: dict[str, Any] = {
        "model": model,
        "task": task,
        "source": {"upload": upload_id, "query": body, "origin": origin},
        "target": target,
        "params": options,
        "backend": backend or "local",
        "promote": promote or "if_better",
    }
    for key in SPEC_OPTIONS:  # a few spec fields may ride in params: one jsonb argument covers them
        if key in options:
            spec[key] = options.pop(key)
    plan = prepared(plpy, "SELECT ml._submit_job($1::pg_catalog.jsonb) AS id", ["pg_catalog.text"])
    return str(plpy.execute(plan, [json.dumps(spec)])[0]["id"])


def _send_rows(plpy: Plpy, rows_sql: str, columns: list[dict[str, Any]]) -> str:
    start = prepared(plpy, "SELECT ml._train_upload($1) AS id", ["pg_catalog.text"])
    append = prepared(plpy, "SELECT ml._train_upload_rows($1, $2) AS n", ["pg_catalog.text", "pg_catalog.text"])
    upload_id = str(plpy.execute(start, [json.dumps({"columns": columns})])[0]["id"])
    cursor = plpy.cursor(
        "SELECT pg_catalog.row_to_json(sqlml_training_rows)::pg_catalog.text AS r FROM (\n"
        + rows_sql
        + "\n) AS sqlml_training_rows"
    )
    pending: list[str] = []
    size = sent = 0
    while True:
        with spi_errors_reported(plpy):
            fetched = cursor.fetch(UPLOAD_ROWS_PER_FETCH)
        pending.extend(row["r"] for row in fetched)
        size += sum(len(row["r"]) for row in fetched)
        if pending and (size >= UPLOAD_BYTES_PER_REQUEST or len(fetched) < UPLOAD_ROWS_PER_FETCH):
            plpy.execute(append, [upload_id, '{"rows":[' + ",".join(pending) + "]}"])
            sent += len(pending)
            pending, size = [], 0
        if len(fetched) < UPLOAD_ROWS_PER_FETCH:
            break
    if not sent:
        raise BridgeError("bad_request", "the training query returned no rows")
    plpy.notice(f"sqlml: sent {sent} training rows to the bridge")
    return upload_id


@bridge_function
def upload_start(call: SqlCall, columns_json: str) -> str:
    """ml._train_upload(columns): open an upload on the bridge; returns its id."""
    answer = call.bridge.call("POST", "/v1/uploads", columns_json, idempotent=False)
    upload_id = answer.get("id") if isinstance(answer, dict) else None
    if not isinstance(upload_id, str) or not UPLOAD_ID.match(upload_id):
        raise BridgeError("bad_response", "the bridge answered POST /v1/uploads without an upload id")
    return upload_id


@bridge_function
def upload_rows(call: SqlCall, upload_id: str, rows_json: str) -> int:
    """ml._train_upload_rows(id, rows): append rows (a JSON {"rows": [...]}) to an upload."""
    if not isinstance(upload_id, str) or not UPLOAD_ID.match(upload_id):
        raise BridgeError("bad_request", "invalid upload id")
    answer = call.bridge.call("POST", f"/v1/uploads/{upload_id}/rows", rows_json, idempotent=False)
    return int(answer.get("rows", 0)) if isinstance(answer, dict) else 0


@bridge_function
def submit_job(call: SqlCall, spec_json: str) -> str:
    """ml._submit_job(spec): POST a job spec whose rows are an upload, and nothing else: this step
    reads the token, so it never names a source the bridge would read itself (a file, a DSN)."""
    spec = json.loads(spec_json)
    source = spec.get("source") if isinstance(spec, dict) else None
    upload = source.get("upload") if isinstance(source, dict) else None
    if not isinstance(source, dict) or set(source) - {"upload", "query", "origin"} or upload not in _trained_uploads:
        raise BridgeError(
            "forbidden",
            "ml._submit_job only sends rows uploaded by ml.train in this session",
            hint="call ml.train(model, task, query, target, ...)",
        )
    spec["source"] = {"upload": upload, **_trained_uploads.pop(upload)}
    answer = call.bridge.call("POST", "/v1/jobs", spec, idempotent=False)
    return str(answer["id"])
