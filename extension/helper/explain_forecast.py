"""ml.explain and ml.forecast: set-returning functions over one bridge answer each.

ml.forecast runs as the caller (SECURITY INVOKER): its `future` and `history` queries are read
with the caller's rights, and the call goes to the bridge through ml._forecast_rows, the SECURITY
DEFINER step that reads the bridge token (the pattern of ml.evaluate / ml._evaluate_rows).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from .bridge_http import quote_model
from .caller_rows import caller_rows_json, json_rows
from .model_names import check_model
from .plpy_api import prepared
from .row_scoring import is_object_text
from .sql_errors import BridgeError, from_spi_error
from .sql_function import SqlCall, bridge_function, sql_function


@bridge_function
def explain(call: SqlCall, model: str, features: str, top_k: int) -> Iterator[tuple[str, Any, float | None]]:
    """ml.explain(model, features, top_k) -> (feature, value, contribution), largest first."""
    check_model(model)
    if not is_object_text(features):
        raise BridgeError("invalid_input", "features must be a JSON object of column: value")
    if not 1 <= top_k <= 10_000:
        raise BridgeError("bad_request", f"top_k must be between 1 and 10000, got {top_k}")
    answer = call.bridge.call(
        "POST",
        f"/v1/models/{quote_model(model)}/explain",
        '{"rows":[' + features + '],"top_k":' + str(int(top_k)) + "}",
    )
    rows = answer.get("rows") if isinstance(answer, dict) else None
    if not isinstance(rows, list) or len(rows) != 1:
        raise BridgeError("bad_response", f'the bridge answered explain for "{model}" with a malformed body')
    for item in (rows[0] or {}).get("contributions") or []:
        yield item.get("feature"), _float_or_none(item.get("value")), item.get("contribution")


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@sql_function
def forecast(
    call: SqlCall,
    model: str,
    series: str | None,
    horizon: int,
    quantiles: Sequence[str] | None,
    future: str | None = None,
    history: str | None = None,
) -> Iterator[tuple[str | None, str, str, float | None]]:
    """ml.forecast(model, series, horizon, quantiles, future, history) -> (series, ts, quantile, value).

    Runs as the caller (SECURITY INVOKER): the `future` and `history` queries are read with the
    caller's rights through a server-side cursor, and go with the call to ml._forecast_rows, the
    SECURITY DEFINER step that alone reads the bridge token."""
    plpy = call.plpy
    check_model(model)
    check_horizon(horizon)
    future_json = caller_rows_json(plpy, future, "ml.forecast future") if future is not None else None
    history_json = caller_rows_json(plpy, history, "ml.forecast history") if history is not None else None
    send = prepared(
        plpy,
        "SELECT ml._forecast_rows($1, $2, $3, $4, $5, $6) AS answer",
        ["pg_catalog.text", "pg_catalog.text", "pg_catalog.int4", "pg_catalog.text[]", "pg_catalog.text",
         "pg_catalog.text"],
    )  # fmt: skip
    try:
        answer = plpy.execute(send, [model, series, horizon, quantiles, future_json, history_json])[0]["answer"]
    except plpy.SPIError as exc:
        raise from_spi_error(exc) from None
    rows = json.loads(str(answer))
    for row in rows:
        yield row.get("series"), row.get("ts"), row.get("quantile"), row.get("value")


def check_horizon(horizon: int | None) -> None:
    if horizon is None or not 1 <= horizon <= 100_000:
        raise BridgeError("bad_request", f"horizon must be between 1 and 100000, got {horizon}")


@bridge_function
def forecast_rows_json(
    call: SqlCall,
    model: str,
    series: str | None,
    horizon: int,
    quantiles: Sequence[str] | None,
    future_json: str | None,
    history_json: str | None,
) -> str:
    """ml._forecast_rows(...): POST the forecast call to the bridge; its rows as a JSON array (text).

    Any role that may call ml.forecast may call this directly, so the JSON it is handed is checked
    here to be an array of objects before it goes into the request body."""
    check_model(model)
    check_horizon(horizon)
    payload: dict[str, Any] = {
        "series": [series] if series is not None else None,
        "horizon": int(horizon),
        "quantiles": list(quantiles) if quantiles is not None else ["p10", "p50", "p90"],
    }
    for name, text in (("future", future_json), ("history", history_json)):
        if text is not None:
            payload[name] = json_rows(text, f"ml._forecast_rows {name}")
    answer = call.bridge.call("POST", f"/v1/models/{quote_model(model)}/forecast", payload)
    rows = answer.get("rows") if isinstance(answer, dict) else None
    if not isinstance(rows, list):
        raise BridgeError("bad_response", f'the bridge answered forecast for "{model}" with a malformed body')
    return json.dumps(rows)
