"""ml.explain and ml.forecast: set-returning functions over one bridge answer each."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .bridge_http import quote_model
from .model_names import check_model
from .row_scoring import is_object_text
from .sql_errors import BridgeError
from .sql_function import SqlCall, bridge_function


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


@bridge_function
def forecast(
    call: SqlCall, model: str, series: str | None, horizon: int, quantiles: Sequence[str] | None
) -> Iterator[tuple[str | None, str, str, float | None]]:
    """ml.forecast(model, series, horizon, quantiles) -> (series, ts, quantile, value)."""
    check_model(model)
    if horizon is None or not 1 <= horizon <= 100_000:
        raise BridgeError("bad_request", f"horizon must be between 1 and 100000, got {horizon}")
    payload = {
        "series": [series] if series is not None else None,
        "horizon": int(horizon),
        "quantiles": list(quantiles) if quantiles is not None else ["p10", "p50", "p90"],
    }
    answer = call.bridge.call("POST", f"/v1/models/{quote_model(model)}/forecast", payload)
    rows = answer.get("rows") if isinstance(answer, dict) else None
    if not isinstance(rows, list):
        raise BridgeError("bad_response", f'the bridge answered forecast for "{model}" with a malformed body')
    for row in rows:
        yield row.get("series"), row.get("ts"), row.get("quantile"), row.get("value")
