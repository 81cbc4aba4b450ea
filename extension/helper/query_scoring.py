"""ml.predict_query(model, query, key): score the rows of the caller's query, streamed in chunks.

Runs as the caller (SECURITY INVOKER): the caller's query is read with the caller's rights through a
server-side cursor, and each chunk goes to the bridge through ml._predict_rows
(batch_scoring.predict_rows_json), the SECURITY DEFINER function that alone can read the bridge
token. Every name this code adds to the query is schema-qualified: the caller's search_path resolves
only the caller's own query.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from .batch_scoring import ChunkSizer
from .model_names import check_model
from .plpy_api import Plpy, PlpyCursor, PlpyPlan, prepared
from .query_text import check_query
from .settings import read_settings
from .sql_errors import BridgeError, from_spi_error, spi_errors_reported
from .sql_function import SqlCall, sql_function

ScoredRows = list[tuple[str | None, str | None]]


@sql_function
def predict_query(call: SqlCall, model: str, query: str, key: str) -> Iterator[tuple[str | None, str | None]]:
    """ml.predict_query(model, query, key) -> (key, result), streamed in chunks of sqlml.batch_size.

    The first chunk is scored before this returns, so that a bad query, a missing column or a
    bridge that is down fail with their own message; PL/Python reports an error raised later,
    while iterating, as "error fetching next item from iterator" with the message as DETAIL."""
    plpy = call.plpy
    check_model(model)
    body = check_query(query, "ml.predict_query")
    if not isinstance(key, str) or not key:
        raise BridgeError("invalid_query", "key must name a column of the query")
    settings = read_settings(plpy, with_token=False)
    key_ident = plpy.quote_ident(key)
    left_out = [key, *_not_inputs(plpy, model, body, key)]
    dropped = "ARRAY[" + ", ".join(plpy.quote_literal(name) for name in left_out) + "]::pg_catalog.text[]"
    # The caller's query becomes a subquery: one statement, and a data-modifying WITH is rejected
    # by PostgreSQL there ("must be at the top level").
    wrapped = (
        f"SELECT (q.{key_ident})::pg_catalog.text AS sqlml_key, "
        f"(pg_catalog.to_jsonb(q) OPERATOR(pg_catalog.-) {dropped})::pg_catalog.text"
        f" AS sqlml_features FROM (\n{body}\n) AS q"
    )
    score = prepared(plpy, "SELECT ml._predict_rows($1, $2) AS results", ["pg_catalog.text", "pg_catalog.text"])
    try:
        cursor = plpy.cursor(wrapped)
        sizer = ChunkSizer(settings)
        first = _score_query_chunk(plpy, cursor, score, model, sizer)
    except plpy.SPIError as exc:
        error = from_spi_error(exc)
        if error.sqlstate == "42703" and f"q.{key}" in error.message:
            error.message, error.hint = f'the query has no column "{key}" (the key)', "key names a column of the query"
        raise error from None
    return _stream_query(plpy, cursor, score, model, sizer, first)


def _not_inputs(plpy: Plpy, model: str, body: str, key: str) -> list[str]:
    """The query's columns that are not inputs of the model (other than the key): left out, so that
    `SELECT *` over a table with ids and the target scores as DuckDB does. Said once, in a NOTICE."""
    with spi_errors_reported(plpy):
        columns = list(plpy.execute(f"SELECT * FROM (\n{body}\n) AS q LIMIT 0").colnames())
        plan = prepared(plpy, "SELECT ml._model_inputs($1) AS inputs", ["pg_catalog.text"])
        inputs = set(plpy.execute(plan, [model])[0]["inputs"] or [])
    extra = [c for c in columns if c != key and c not in inputs]
    if extra and inputs.intersection(columns):
        shown = ", ".join(extra[:10]) + (f" and {len(extra) - 10} more" if len(extra) > 10 else "")
        plpy.notice(f"sqlml: {shown} {'is not an input' if len(extra) == 1 else 'are not inputs'} of {model}: left out")
        return extra
    return []  # no input at all among the columns: the bridge names the missing ones


@sql_function
def _stream_query(
    call: SqlCall, cursor: PlpyCursor, score: PlpyPlan, model: str, sizer: ChunkSizer, first: tuple[int, ScoredRows]
) -> Iterator[tuple[str | None, str | None]]:
    asked, chunk = first
    while chunk:
        yield from chunk
        if len(chunk) < asked:
            return
        with spi_errors_reported(call.plpy):
            asked, chunk = _score_query_chunk(call.plpy, cursor, score, model, sizer)


def _score_query_chunk(
    plpy: Plpy, cursor: PlpyCursor, score: PlpyPlan, model: str, sizer: ChunkSizer
) -> tuple[int, ScoredRows]:
    """(rows asked of the cursor, the scored (key, result) pairs of the rows it gave)."""
    asked = sizer.size
    rows = cursor.fetch(asked)
    if not len(rows):
        return asked, []
    payload = "[" + ",".join(row["sqlml_features"] for row in rows) + "]"
    with sizer.timing(len(rows)):
        results = json.loads(plpy.execute(score, [model, payload])[0]["results"])
    if len(results) != len(rows):
        raise BridgeError(
            "bad_response",
            f'the bridge answered predict for "{model}" with {len(results)} rows for {len(rows)}',
            detail={"expected_rows": len(rows), "got": len(results)},
        )
    return asked, [(row["sqlml_key"], result) for row, result in zip(rows, results, strict=True)]
