"""Forecasts end to end: the trainer's artifact served by the forecast runtime through ModelHost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sqlml.bridge.host import ModelHost
from sqlml.bridge.manifest import Manifest
from sqlml.bridge.registry import Registry
from sqlml.bridge.runtimes.forecast import (
    HISTORY_HOURS,
    MAX_HORIZON,
    OUTPUT_SCHEMA,
    horizon_features,
    parse_quantile,
)
from sqlml.bridge.training.forecast import train_forecast
from sqlml.data.power import SERIES
from sqlml.errors import InvalidInput, TrainingError
from tests.tabular.conftest import TEST_GRID

MODEL = "household_power"


def _wide(table: pa.Table) -> pd.DataFrame:
    """(series, ts) rows with one column per quantile label."""
    wide: pd.DataFrame = table.to_pandas().pivot_table(index=["series", "ts"], columns="quantile", values="value")
    return wide


def test_manifest_records_test_metrics(forecast_manifest: Manifest) -> None:
    metrics = forecast_manifest.metrics
    for key in ("coverage_p10_p90", "pinball_loss", "pinball_loss_seasonal_naive", "rmse_mean"):
        assert np.isfinite(metrics[key]), key
    assert 0.0 <= metrics["coverage_p10_p90"] <= 1.0
    for series in SERIES:
        assert f"coverage_p10_p90.{series}" in metrics
    assert forecast_manifest.signature.input_names() == ["series", "horizon", "quantile"]
    assert forecast_manifest.signature.output_names() == ["series", "ts", "quantile", "value"]
    assert forecast_manifest.lineage["refit_on_all_data"] is False


def test_default_forecast_covers_all_series_and_default_quantiles(host: ModelHost) -> None:
    table = host.forecast(MODEL, None, 24, [])
    assert table.schema == OUTPUT_SCHEMA
    assert table.num_rows == len(SERIES) * 24 * 3
    assert list(dict.fromkeys(table.column("series").to_pylist())) == list(SERIES)
    assert set(table.column("quantile").to_pylist()) == {"p10", "p50", "p90"}
    assert table.column("value").null_count == 0


def test_forecast_starts_the_hour_after_history(host: ModelHost, power_frame: pd.DataFrame) -> None:
    table = host.forecast(MODEL, ["sub_metering_3"], 5, ["p50"])
    stamps = pd.to_datetime(table.column("ts").to_pylist())
    last = power_frame["ts"].max()
    expected = pd.date_range(last + pd.Timedelta(hours=1), periods=5, freq="h")
    assert list(stamps) == list(expected)


def test_quantiles_are_monotone(host: ModelHost) -> None:
    labels = ["p1", "p5", "p10", "p25", "p37.5", "p50", "p75", "p90", "p99"]
    wide = _wide(host.forecast(MODEL, None, MAX_HORIZON, labels))[labels].to_numpy()
    assert np.all(np.diff(wide, axis=1) >= -1e-12)


def test_arbitrary_quantile_lies_between_its_neighbours(host: ModelHost) -> None:
    wide = _wide(host.forecast(MODEL, ["global_active_power"], 48, ["p25", "p37.5", "p50"]))
    assert (wide["p25"] <= wide["p37.5"]).all() and (wide["p37.5"] <= wide["p50"]).all()
    assert (wide["p37.5"] < wide["p50"]).any()  # interpolated, not just a copy of a neighbour


def test_mean_forecast(host: ModelHost) -> None:
    table = host.forecast(MODEL, ["remainder"], 12, ["mean", "p50"])
    wide = _wide(table)
    assert np.isfinite(wide["mean"]).all() and (wide["mean"] >= 0).all()
    assert table.column("quantile").to_pylist()[:2] == ["mean", "p50"]  # requested order kept


def test_non_negative_series_never_forecast_below_zero(host: ModelHost) -> None:
    values = host.forecast(MODEL, None, MAX_HORIZON, ["p1"]).column("value").to_numpy()
    assert values.min() >= 0.0


@pytest.mark.parametrize("horizon", [0, -1, MAX_HORIZON + 1, 1.5, True, "24"])
def test_horizon_out_of_bounds(host: ModelHost, horizon: int) -> None:
    with pytest.raises(InvalidInput, match="horizon"):
        host.forecast(MODEL, None, horizon, ["p50"])


def test_horizon_bounds_are_inclusive(host: ModelHost) -> None:
    assert host.forecast(MODEL, ["sub_metering_1"], 1, ["p50"]).num_rows == 1
    assert host.forecast(MODEL, ["sub_metering_1"], MAX_HORIZON, ["p50"]).num_rows == MAX_HORIZON
    assert host.forecast(MODEL, ["sub_metering_1"], 2.0, ["p50"]).num_rows == 2  # type: ignore[arg-type]


def test_unknown_series_suggests_close_names(host: ModelHost) -> None:
    with pytest.raises(InvalidInput, match="sub_metering_9") as caught:
        host.forecast(MODEL, ["sub_metering_9"], 3, ["p50"])
    assert "sub_metering_1" in (caught.value.hint or "")


@pytest.mark.parametrize("label", ["p0.5", "p100", "p99.5", "median", "10", ""])
def test_invalid_quantile_labels(host: ModelHost, label: str) -> None:
    with pytest.raises(InvalidInput, match="quantile"):
        host.forecast(MODEL, None, 3, [label])


def test_quantile_labels_parse() -> None:
    assert parse_quantile("p10") == pytest.approx(0.10)
    assert parse_quantile("P37.5") == pytest.approx(0.375)
    assert parse_quantile("p1") == pytest.approx(0.01) and parse_quantile("p99") == pytest.approx(0.99)
    assert parse_quantile("mean") is None


def test_row_wise_predict_matches_forecast(host: ModelHost) -> None:
    batch = pa.table({"series": ["sub_metering_2", None], "horizon": [6, 2], "quantile": ["p90", "p50"]})
    out = host.predict(MODEL, batch)
    expected = host.forecast(MODEL, ["sub_metering_2"], 6, ["p90"]).slice(5, 1)
    assert out.slice(0, 1).to_pylist() == expected.to_pylist()
    assert out.column("value")[1].as_py() is None  # NULL in, NULL out


def test_features_never_look_past_the_origin() -> None:
    rng = np.random.default_rng(0)
    values = rng.random(HISTORY_HOURS + MAX_HORIZON)
    horizons = np.arange(1, MAX_HORIZON + 1, dtype=np.int64)
    targets = HISTORY_HOURS - 1 + horizons
    times = pd.DatetimeIndex(pd.date_range("2010-01-01", periods=len(horizons), freq="h"))
    before = horizon_features(values[:HISTORY_HOURS], targets, horizons, times, 0)
    changed = values.copy()
    changed[HISTORY_HOURS:] = 1e6  # the future the model must not see
    after = horizon_features(changed, targets, horizons, times, 0)
    np.testing.assert_array_equal(before, after)
    assert np.isfinite(before).all()


def test_too_little_history_is_a_training_error(registry: Registry, power_frame: pd.DataFrame) -> None:
    short = power_frame[power_frame["ts"] < power_frame["ts"].min() + pd.Timedelta(hours=HISTORY_HOURS)]
    with pytest.raises(TrainingError, match="not enough history"):
        train_forecast(registry, progress=False, data=short, alias=None, quantile_grid=TEST_GRID, n_estimators=2)


def test_grid_must_hold_the_measured_quantiles(registry: Registry, power_frame: pd.DataFrame) -> None:
    with pytest.raises(TrainingError, match="quantile_grid"):
        train_forecast(registry, progress=False, data=power_frame, alias=None, quantile_grid=(0.05, 0.5, 0.95))
