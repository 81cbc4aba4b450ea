"""The forecast runtime: probabilistic hourly forecasts up to a week ahead from stored history.

One global XGBoost model predicts a grid of quantiles (`reg:quantileerror`) for every series at
once (the series is a feature, targets are scaled per series); a second, squared-error model
gives the mean. Every feature of a target hour is computable from history alone for any step up to
`MAX_HORIZON` (calendar, values a week or more back, same-hour means, levels at the origin), so a
168-hour forecast is one vectorised predict, not a recursion.

The artifact (`quantiles.json`, `mean.json`, `forecast.json`) carries the last `HISTORY_HOURS` of
each series, per-series scales, and the conformal offsets measured on a validation split. A
forecast starts the hour after the stored history ends. Any quantile from p1 to p99 is linearly
interpolated between the (sorted, hence monotone) grid quantiles.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import xgboost as xgb

from sqlml.bridge.runtimes.base import Runtime
from sqlml.errors import InvalidInput, ModelLoadError, close_names

QUANTILES_FILE = "quantiles.json"
MEAN_FILE = "mean.json"
META_FILE = "forecast.json"
MAX_HORIZON = 168
WEEK = 168
DEFAULT_QUANTILES = ("p10", "p50", "p90")
FEATURES = (
    "series",
    "hour",
    "weekday",
    "day_of_year",
    "horizon",
    "lag_168",
    "lag_336",
    "same_hour_last_day",
    "same_hour_mean_7d",
    "same_hour_of_week_mean_4w",
    "last_value",
    "mean_24h",
    "mean_168h",
    "std_168h",
    "mean_672h",
)
# The deepest look-back: the 672-hour level at an origin 168 hours before the target.
HISTORY_HOURS = 672 + MAX_HORIZON
OUTPUT_SCHEMA = pa.schema(
    [
        pa.field("series", pa.string()),
        pa.field("ts", pa.timestamp("us")),
        pa.field("quantile", pa.string()),
        pa.field("value", pa.float64()),
    ]
)
_QUANTILE_LABEL = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")

FloatMatrix = np.ndarray[Any, np.dtype[np.float32]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]


def horizon_features(
    values: np.ndarray[Any, np.dtype[np.float64]],
    targets: IntArray,
    horizons: IntArray,
    target_times: pd.DatetimeIndex,
    series_code: int,
) -> FloatMatrix:
    """The `FEATURES` matrix for target hours `targets` (indices into `values`, possibly past its
    end) forecast `horizons` hours ahead: only `values[: target - horizon + 1]` is looked at."""
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    squares = np.concatenate([[0.0], np.cumsum(values * values)])
    origin = targets - horizons  # the last observed hour

    def window_mean(sums: np.ndarray[Any, Any], hours: int) -> np.ndarray[Any, Any]:
        return np.asarray((sums[origin + 1] - sums[origin + 1 - hours]) / hours)

    days_back = (horizons + 23) // 24  # the latest same hour of day that is already observed
    same_hour_7d = np.mean([values[targets - 24 * (days_back + k)] for k in range(7)], axis=0)
    mean_168 = window_mean(cumulative, WEEK)
    variance_168 = np.maximum(window_mean(squares, WEEK) - mean_168 * mean_168, 0.0)
    columns = [
        np.full(len(targets), series_code, dtype=np.float64),
        target_times.hour.to_numpy(dtype=np.float64),
        target_times.dayofweek.to_numpy(dtype=np.float64),
        target_times.dayofyear.to_numpy(dtype=np.float64),
        horizons.astype(np.float64),
        values[targets - WEEK],
        values[targets - 2 * WEEK],
        values[targets - 24 * days_back],
        same_hour_7d,
        np.mean([values[targets - WEEK * k] for k in range(1, 5)], axis=0),
        values[origin],
        window_mean(cumulative, 24),
        mean_168,
        np.sqrt(variance_168),
        window_mean(cumulative, 4 * WEEK),
    ]
    return np.column_stack(columns).astype(np.float32)


def parse_quantile(label: str) -> float | None:
    """`"p37.5"` -> 0.375, `"mean"` -> None; anything else is InvalidInput."""
    text = str(label).strip().lower()
    if text == "mean":
        return None
    match = _QUANTILE_LABEL.match(text)
    if match and 1.0 <= float(match.group(1)) <= 99.0:
        return float(match.group(1)) / 100.0
    raise InvalidInput(
        f"invalid quantile {label!r}",
        hint='use "p1" … "p99" (decimals allowed, e.g. "p37.5") or "mean"',
        detail={"quantile": label},
    )


def interpolate_quantiles(
    sorted_grid_values: np.ndarray[Any, Any], grid: np.ndarray[Any, Any], level: float
) -> np.ndarray[Any, Any]:
    """Linear interpolation between the grid columns bracketing `level` (grid covers 0.01–0.99)."""
    upper = int(np.clip(np.searchsorted(grid, level), 1, len(grid) - 1))
    lower = upper - 1
    weight = (level - grid[lower]) / (grid[upper] - grid[lower])
    weight = float(np.clip(weight, 0.0, 1.0))
    return np.asarray(sorted_grid_values[:, lower] * (1.0 - weight) + sorted_grid_values[:, upper] * weight)


@dataclass
class ForecastMeta:
    """What `forecast.json` holds besides the boosters."""

    series: list[str]
    grid: list[float]
    scales: dict[str, float]
    offsets: dict[str, list[float]]  # per series, per grid quantile, in scaled units
    nonnegative: dict[str, bool]
    history_end: str  # ISO timestamp of the last stored hour
    history: dict[str, list[float]]  # the last HISTORY_HOURS values of each series (kWh)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @staticmethod
    def from_json(text: str) -> ForecastMeta:
        return ForecastMeta(**json.loads(text))


class ForecastRuntime(Runtime):
    name = "forecast"

    quantile_model: xgb.Booster | None = None
    mean_model: xgb.Booster | None = None

    def load(self) -> None:
        for required in (QUANTILES_FILE, MEAN_FILE, META_FILE):
            if not (self.path / required).is_file():
                raise ModelLoadError(f'model "{self.manifest.name}" has no {required} in its artifact')
        self.meta = ForecastMeta.from_json((self.path / META_FILE).read_text())
        self.grid = np.asarray(self.meta.grid, dtype=np.float64)
        quantile_model, mean_model = xgb.Booster(), xgb.Booster()
        quantile_model.load_model(str(self.path / QUANTILES_FILE))
        mean_model.load_model(str(self.path / MEAN_FILE))
        for booster in (quantile_model, mean_model):
            # forecasts are at most a few hundred rows: one thread answers in under a millisecond
            # where a busy machine's OpenMP pool took 50+ ms for 24 rows (measured)
            booster.set_param({"nthread": 1})
        self.history_end = pd.Timestamp(self.meta.history_end)
        self.quantile_model, self.mean_model = quantile_model, mean_model

    def unload(self) -> None:
        self.quantile_model = self.mean_model = None

    def predict(self, batch: pa.Table) -> pa.Table:
        """Row-wise calls (series, horizon, quantile) -> the forecast for the horizon's last hour.

        `forecast()` is the set-returning form engines use; this keeps `ml.predict` working too.
        """
        out: dict[str, list[Any]] = {name: [] for name in OUTPUT_SCHEMA.names}
        for row in batch.to_pylist():
            table = self.forecast([row["series"]], int(row["horizon"]), [row["quantile"]])
            last = table.slice(table.num_rows - 1, 1).to_pylist()[0]
            for name, values in out.items():
                values.append(last[name])
        return pa.Table.from_pydict(out, schema=OUTPUT_SCHEMA)

    def forecast(self, series: list[str] | None, horizon: int, quantiles: list[str]) -> pa.Table:
        if self.quantile_model is None or self.mean_model is None:
            raise ModelLoadError(f'model "{self.manifest.name}" is not loaded')
        chosen = self._check_series(series)
        horizon = self._check_horizon(horizon)
        labels = list(dict.fromkeys(str(q).strip().lower() for q in (quantiles or DEFAULT_QUANTILES)))
        levels = [parse_quantile(label) for label in labels]
        steps = np.arange(1, horizon + 1, dtype=np.int64)
        times = pd.DatetimeIndex(self.history_end + pd.to_timedelta(steps, unit="h"))
        blocks = []
        for name in chosen:
            values = self._series_values(name, steps, times, levels)  # (horizon, len(levels))
            blocks.append(values.reshape(-1))
        count = len(chosen) * horizon * len(labels)
        return pa.Table.from_arrays(
            [
                pa.array(np.repeat(np.asarray(chosen, dtype=object), horizon * len(labels)), pa.string()),
                pa.array(np.tile(np.repeat(times.to_numpy(dtype="datetime64[us]"), len(labels)), len(chosen))),
                pa.array(np.tile(np.asarray(labels, dtype=object), count // max(len(labels), 1)), pa.string()),
                pa.array(np.concatenate(blocks) if blocks else np.array([], dtype=np.float64)),
            ],
            schema=OUTPUT_SCHEMA,
        )

    def _series_values(
        self, name: str, steps: IntArray, times: pd.DatetimeIndex, levels: list[float | None]
    ) -> np.ndarray[Any, Any]:
        assert self.quantile_model is not None and self.mean_model is not None
        scale = self.meta.scales[name]
        history = np.asarray(self.meta.history[name], dtype=np.float64) / scale
        targets = len(history) - 1 + steps
        features = horizon_features(history, targets, steps, times, self.meta.series.index(name))
        grid_values = np.asarray(self.quantile_model.inplace_predict(features), dtype=np.float64)
        grid_values = np.sort(grid_values + np.asarray(self.meta.offsets[name]), axis=1) * scale
        mean = np.asarray(self.mean_model.inplace_predict(features), dtype=np.float64) * scale
        if self.meta.nonnegative.get(name, False):
            grid_values, mean = np.maximum(grid_values, 0.0), np.maximum(mean, 0.0)
        columns = [mean if level is None else interpolate_quantiles(grid_values, self.grid, level) for level in levels]
        return np.column_stack(columns)

    def _check_series(self, series: list[str] | None) -> list[str]:
        known = self.meta.series
        if not series:
            return list(known)
        chosen = list(dict.fromkeys(str(s) for s in series))
        for name in chosen:
            if name not in known:
                close = close_names(name, known)
                raise InvalidInput(
                    f'model "{self.manifest.name}" has no series "{name}"',
                    hint=f"did you mean {', '.join(repr(c) for c in close)}?"
                    if close
                    else f"known series: {', '.join(known)}",
                    detail={"model": self.manifest.name, "series": name, "known": known},
                )
        return chosen

    def _check_horizon(self, horizon: int) -> int:
        # 48.0 arrives from JSON clients and DOUBLE columns: a whole number is fine, 1.5 is not
        whole = isinstance(horizon, (int, np.integer)) or (isinstance(horizon, float) and horizon.is_integer())
        if isinstance(horizon, bool) or not whole:
            raise InvalidInput(f"horizon must be a whole number of hours, got {horizon!r}")
        if not 1 <= int(horizon) <= MAX_HORIZON:
            raise InvalidInput(
                f"horizon must be between 1 and {MAX_HORIZON} hours, got {horizon}",
                detail={"horizon": int(horizon), "max": MAX_HORIZON},
            )
        return int(horizon)
