"""`evaluate` for forecast models: a version trained up to day D is measured on the days after D.

The models are the real trainer's, on the generated promo series of `tests/forecast_series.py`.
The metrics are recomputed here from the served forecast and from the generated frame (not from
the artifact's stored history), so the route cannot report numbers of other rows or steps.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from sqlml.bridge.app import create_app
from sqlml.bridge.client import LocalClient
from sqlml.bridge.host import ModelHost
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings
from sqlml.errors import InvalidInput
from sqlml.udfs import register
from tests.forecast_series import TRAINED_DAYS, promo_frame, train_promo_models

AHEAD = 30


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return promo_frame()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame) -> Registry:
    registry = Registry(tmp_path_factory.mktemp("forecast-evaluate") / "models")
    train_promo_models(registry, frame, "ev")
    return registry


def _rows(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, object]]:
    after = frame.iloc[TRAINED_DAYS : TRAINED_DAYS + AHEAD][columns].copy()
    if "ts" in after.columns:
        after["ts"] = after["ts"].astype(str)
    return [{k: (bool(v) if isinstance(v, np.bool_) else v) for k, v in r.items()} for r in after.to_dict("records")]


def _pinball(y: np.ndarray, q: np.ndarray, level: float) -> float:
    d = y - q
    return float(np.mean(np.maximum(level * d, (level - 1) * d)))


def test_the_route_measures_the_served_forecast_on_the_days_after_training(
    store: Registry, frame: pd.DataFrame
) -> None:
    with TestClient(create_app(BridgeSettings(store=str(store.root), auth=False))) as http:
        answer = http.post("/v1/models/ev_plain/evaluate", json={"rows": _rows(frame, ["ts", "value"])})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["rows"], result["skipped_rows"]) == (AHEAD, 0)
    served = ModelHost(store).forecast("ev_plain", None, AHEAD, ["p10", "p50", "p90"]).to_pandas()
    q = served.pivot_table(index="ts", columns="quantile", values="value")
    y = frame["value"].to_numpy()[TRAINED_DAYS : TRAINED_DAYS + AHEAD]
    ahead = np.arange(1, AHEAD + 1)
    naive = frame["value"].to_numpy()[TRAINED_DAYS - 1 + ahead - 7 * np.ceil(ahead / 7).astype(int)]
    metrics = result["metrics"]
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(y - q["p50"].to_numpy())), rel=1e-9)
    assert metrics["coverage_p10_p90"] == pytest.approx(np.mean((y >= q["p10"]) & (y <= q["p90"])), abs=1e-12)
    pinball = np.mean(
        [_pinball(y, q[label].to_numpy(), lv) for label, lv in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))]
    )
    assert metrics["pinball_loss"] == pytest.approx(pinball, rel=1e-9)
    assert metrics["mae_seasonal_naive"] == pytest.approx(np.mean(np.abs(y - naive)), rel=1e-9)
    assert metrics["beats_seasonal_naive"] == float(metrics["mae"] < metrics["mae_seasonal_naive"])


def test_covariates_come_from_the_rows_and_lower_the_error(store: Registry, frame: pd.DataFrame) -> None:
    client = LocalClient(store)
    after = frame.iloc[TRAINED_DAYS : TRAINED_DAYS + AHEAD]
    plain = client.evaluate("ev_plain", pa.Table.from_pandas(after[["ts", "value"]], preserve_index=False))
    promo = client.evaluate("ev_promo", pa.Table.from_pandas(after[["ts", "value", "promo"]], preserve_index=False))
    assert promo["metrics"]["mae"] < 0.6 * plain["metrics"]["mae"]
    assert promo["metrics"]["beats_seasonal_naive"] == 1.0


def test_rows_inside_the_history_past_the_bound_or_null_are_skipped_and_counted(
    store: Registry, frame: pd.DataFrame
) -> None:
    rows = frame.iloc[TRAINED_DAYS - 5 :][["ts", "value"]].copy()  # 5 days seen, then 90 more
    rows.loc[rows.index[10], "value"] = np.nan
    bound = int(store.describe("ev_plain").metrics["max_horizon"])
    result = LocalClient(store).evaluate("ev_plain", pa.Table.from_pandas(rows, preserve_index=False))
    inside = len(rows) - 5
    assert result["rows"] == min(inside, bound) - 1
    assert result["skipped_rows"] == len(rows) - result["rows"]


def test_duckdb_evaluates_a_forecast_over_a_query(store: Registry, frame: pd.DataFrame) -> None:
    con = duckdb.connect()
    register(con, LocalClient(store))
    con.register("sales", frame)
    day = frame["ts"].iloc[TRAINED_DAYS]
    metrics = dict(
        con.sql(
            f"SELECT metric, value FROM ml.evaluate('ev_plain', 'SELECT ts, value FROM sales WHERE ts >= ''{day}'' "
            f"ORDER BY ts LIMIT {AHEAD}')"
        ).fetchall()
    )
    after = frame.iloc[TRAINED_DAYS : TRAINED_DAYS + AHEAD][["ts", "value"]]
    direct = LocalClient(store).evaluate("ev_plain", pa.Table.from_pandas(after, preserve_index=False))
    assert metrics["rows"] == AHEAD and metrics["mae"] == pytest.approx(direct["metrics"]["mae"], rel=1e-9)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["ts", "promo"], "need ts and value columns"),
        (["value"], "need ts and value columns"),
    ],
)
def test_rows_without_ts_or_value_say_so(
    store: Registry, frame: pd.DataFrame, columns: list[str], message: str
) -> None:
    with TestClient(create_app(BridgeSettings(store=str(store.root), auth=False))) as http:
        answer = http.post("/v1/models/ev_plain/evaluate", json={"rows": _rows(frame, columns)})
    assert answer.status_code == 422 and message in answer.json()["error"]["message"]


def test_rows_all_before_the_forecast_say_where_it_starts(store: Registry, frame: pd.DataFrame) -> None:
    seen = pa.Table.from_pandas(frame.iloc[:20][["ts", "value"]], preserve_index=False)
    with pytest.raises(InvalidInput, match="no row of the evaluation falls within the forecast"):
        LocalClient(store).evaluate("ev_plain", seen)


def test_future_and_history_rows_are_bounded_like_any_request(store: Registry, frame: pd.DataFrame) -> None:
    """A forecast call's rows count against max_request_rows as predict's do: 413 before any work."""
    settings = BridgeSettings(store=str(store.root), auth=False, max_request_rows=10)
    rows = _rows(frame, ["ts", "value"])[:11]
    with TestClient(create_app(settings)) as http:
        for field in ("future", "history"):
            answer = http.post("/v1/models/ev_plain/forecast", json={"horizon": 3, field: rows})
            assert answer.status_code == 413, answer.text
        fine = http.post("/v1/models/ev_plain/forecast", json={"horizon": 3})
        assert fine.status_code == 200, fine.text
