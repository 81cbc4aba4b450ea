"""ml.evaluate(model, query): a model's metrics on the rows of the caller's query.

Runs as the caller (SECURITY INVOKER): the query is read with the caller's rights through a
server-side cursor, and its rows go to the bridge's evaluate route through ml._evaluate_rows, the
SECURITY DEFINER step that alone reads the bridge token. The bridge keeps the model's inputs and
its target column and ignores the others, so `SELECT * FROM churn_test` evaluates as it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from sqlml.sql.evaluation_rows import evaluation_rows

from .bridge_http import quote_model
from .caller_rows import caller_rows_json, json_rows
from .model_names import check_model
from .plpy_api import prepared
from .sql_errors import from_spi_error
from .sql_function import SqlCall, bridge_function, sql_function


@sql_function
def evaluate(call: SqlCall, model: str, query: str) -> Iterator[tuple[str, float]]:
    """ml.evaluate(model, query) -> (metric, value) rows; at most MAX_BATCH_SIZE rows (one request)."""
    plpy = call.plpy
    check_model(model)
    rows = caller_rows_json(plpy, query, "ml.evaluate")
    send = prepared(plpy, "SELECT ml._evaluate_rows($1, $2) AS answer", ["pg_catalog.text", "pg_catalog.text"])
    try:
        answer = plpy.execute(send, [model, rows])[0]["answer"]
    except plpy.SPIError as exc:
        raise from_spi_error(exc) from None
    return iter(evaluation_rows(json.loads(str(answer))))


@bridge_function
def evaluate_rows_json(call: SqlCall, model: str, rows_json: str) -> str:
    """ml._evaluate_rows(model, text): POST the rows to /v1/models/{model}/evaluate; the answer as JSON."""
    check_model(model)
    rows = json_rows(rows_json, "ml._evaluate_rows")
    path = f"/v1/models/{quote_model(model)}/evaluate"
    return json.dumps(call.bridge.call("POST", path, {"rows": rows}))
