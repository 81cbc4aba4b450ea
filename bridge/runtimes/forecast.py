"""The forecast runtime: probabilistic forecasts at the model's frequency, from stored history.

One global XGBoost model predicts a grid of quantiles (`reg:quantileerror`) for every series at
once (the series is a feature, targets are scaled per series); a second, squared-error model
gives the mean. Every feature of a target step is computable from history alone for any step up
to the frequency's `max_horizon` (calendar, values a season or more back, same-position means,
levels at the origin), so a whole forecast is one vectorised predict, not a recursion. The
frequency (`forecast_frequency.py`) sets the cycles, the horizon bound and the output timestamps;
for daily and coarser steps targets are relative to the level at the origin, so trends carry on.

The artifact (`quantiles.json`, `mean.json`, `forecast.json`) carries the last
`frequency.history` steps of each series, per-series scales, and the conformal offsets measured
on a validation split. A forecast starts the step after the stored history ends, or, given fresh
`history` rows, the step after their last timestamp. Covariates (other columns of the training
query) add their value at the target step as features, so a model with covariates needs their
`future` values for the whole horizon (`forecast_inputs.py`). Any quantile from p1 to p99 is
linearly interpolated between the (sorted, hence monotone) grid quantiles.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import xgboost as xgb

from sqlml.bridge.runtimes.base import Runtime
from sqlml.bridge.runtimes.forecast_frequency import HOURLY, Frequency, named
from sqlml.bridge.runtimes.forecast_inputs import Observed, fresh_history, future_covariates
from sqlml.errors import InvalidInput, ModelLoadError, close_names

QUANTILES_FILE = "quantiles.json"
MEAN_FILE = "mean.json"
META_FILE = "forecast.json"
MAX_HORIZON = HOURLY.max_horizon  # the hourly bound; other frequencies carry their own
DEFAULT_QUANTILES = ("p10", "p50", "p90")
VALUE_FEATURES = (
    "lag_season",
    "lag_2_seasons",
    "same_cycle_last",
    "same_cycle_mean",
    "same_season_mean",
    "last_value",
    "mean_cycle",
    "mean_season",
    "std_season",
    "mean_window",
)
HISTORY_HOURS = HOURLY.history
LEVEL_FLOOR = 0.05  # in series-scale units: a near-zero origin level must not blow targets up
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


def feature_names(frequency: Frequency = HOURLY, covariates: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The model's feature columns: `horizon_features`' and then each covariate at the target step."""
    return ["series", *frequency.calendar, "horizon", *VALUE_FEATURES, *covariates]


def _calendar(times: pd.DatetimeIndex, name: str) -> np.ndarray[Any, Any]:
    values = {
        "minute_of_day": lambda: times.hour * 60 + times.minute,
        "hour": lambda: times.hour,
        "weekday": lambda: times.dayofweek,
        "day_of_month": lambda: times.day,
        "day_of_year": lambda: times.dayofyear,
        "week_of_year": lambda: times.isocalendar().week.to_numpy(),
        "month": lambda: times.month,
        "quarter": lambda: times.quarter,
    }[name]()
    return np.asarray(values, dtype=np.float64)


def origin_level(values: np.ndarray[Any, Any], targets: IntArray, horizons: IntArray, frequency: Frequency) -> Any:
    """What targets and value features are divided by: the mean absolute level over the season
    ending at the origin for relative frequencies, 1 otherwise."""
    if not frequency.relative:
        return np.ones(len(targets), dtype=np.float64)
    sums = np.concatenate([[0.0], np.cumsum(np.abs(values))])
    origin = targets - horizons
    level = (sums[origin + 1] - sums[origin + 1 - frequency.season]) / frequency.season
    return np.maximum(level, LEVEL_FLOOR)


def horizon_features(
    values: np.ndarray[Any, np.dtype[np.float64]],
    targets: IntArray,
    horizons: IntArray,
    target_times: pd.DatetimeIndex,
    series_code: int,
    frequency: Frequency = HOURLY,
) -> FloatMatrix:
    """The `feature_names(frequency)` matrix for target steps `targets` (indices into `values`,
    possibly past its end) forecast `horizons` steps ahead: only `values[: target - horizon + 1]`
    is looked at. Lags reach back whole cycles/seasons to the latest one already observed."""
    cycle, season = frequency.cycle, frequency.season
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    squares = np.concatenate([[0.0], np.cumsum(values * values)])
    origin = targets - horizons  # the last observed step

    def window_mean(sums: np.ndarray[Any, Any], steps: int) -> np.ndarray[Any, Any]:
        return np.asarray((sums[origin + 1] - sums[origin + 1 - steps]) / steps)

    cycles_back = (horizons + cycle - 1) // cycle  # the latest same position in the cycle observed
    seasons_back = (horizons + season - 1) // season
    mean_season = window_mean(cumulative, season)
    variance_season = np.maximum(window_mean(squares, season) - mean_season * mean_season, 0.0)
    value_columns = [
        values[targets - season * seasons_back],
        values[targets - season * (seasons_back + 1)],
        values[targets - cycle * cycles_back],
        np.mean([values[targets - cycle * (cycles_back + k)] for k in range(frequency.cycle_count)], axis=0),
        np.mean([values[targets - season * (seasons_back + k)] for k in range(frequency.season_count)], axis=0),
        values[origin],
        window_mean(cumulative, cycle),
        mean_season,
        np.sqrt(variance_season),
        window_mean(cumulative, frequency.window),
    ]
    if frequency.relative:
        level = origin_level(values, targets, horizons, frequency)
        value_columns = [column / level for column in value_columns]
    columns = [
        np.full(len(targets), series_code, dtype=np.float64),
        *(_calendar(target_times, name) for name in frequency.calendar),
        horizons.astype(np.float64),
        *value_columns,
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
    history_end: str  # ISO timestamp of the last stored step
    history: dict[str, list[float]]  # the last `frequency.history` values of each series
    frequency: str = "h"  # the pandas alias of the step (`Frequency.offset`); older artifacts are hourly
    covariates: list[dict[str, str]] = field(default_factory=list)  # name and SQL type, in feature order
    aggregate: str | None = None  # the training's rules, applied to fresh history too
    fill: str | None = None

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
        self.frequency = named(self.meta.frequency)
        self.quantile_model, self.mean_model = quantile_model, mean_model

    def unload(self) -> None:
        self.quantile_model = self.mean_model = None

    def predict(self, batch: pa.Table) -> pa.Table:
        """Row-wise calls (series, horizon, quantile) -> the forecast for the horizon's last step.

        `forecast()` is the set-returning form engines use; this keeps `ml.predict` working too.
        """
        out: dict[str, list[Any]] = {name: [] for name in OUTPUT_SCHEMA.names}
        for row in batch.to_pylist():
            table = self.forecast([row["series"]], int(row["horizon"]), [row["quantile"]], None, None)
            last = table.slice(table.num_rows - 1, 1).to_pylist()[0]
            for name, values in out.items():
                values.append(last[name])
        return pa.Table.from_pydict(out, schema=OUTPUT_SCHEMA)

    @property
    def covariates(self) -> list[str]:
        return [c["name"] for c in self.meta.covariates]

    def forecast(
        self,
        series: list[str] | None,
        horizon: int,
        quantiles: list[str],
        future: pa.Table | None = None,
        history: pa.Table | None = None,
    ) -> pa.Table:
        """`horizon` steps after the stored history, or after `history`'s rows when given; a model
        with covariates takes their values for those steps from `future`."""
        if self.quantile_model is None or self.mean_model is None:
            raise ModelLoadError(f'model "{self.manifest.name}" is not loaded')
        horizon = self._check_horizon(horizon)
        labels = list(dict.fromkeys(str(q).strip().lower() for q in (quantiles or DEFAULT_QUANTILES)))
        levels = [parse_quantile(label) for label in labels]
        observed = self._observed(series, history)
        steps = np.arange(1, horizon + 1, dtype=np.int64)
        times = {name: self.frequency.after(seen.end, horizon) for name, seen in observed.items()}
        regressors = future_covariates(self.manifest.name, future, self.covariates, times, self.frequency)
        chosen = list(observed)
        blocks = [
            self._series_values(name, observed[name].values, steps, times[name], levels, regressors[name]).reshape(-1)
            for name in chosen
        ]  # each (horizon, len(levels)), flattened
        count = len(chosen) * horizon * len(labels)
        stamps = [np.repeat(times[name].to_numpy(dtype="datetime64[us]"), len(labels)) for name in chosen]
        return pa.Table.from_arrays(
            [
                pa.array(np.repeat(np.asarray(chosen, dtype=object), horizon * len(labels)), pa.string()),
                pa.array(np.concatenate(stamps) if stamps else np.array([], dtype="datetime64[us]")),
                pa.array(np.tile(np.asarray(labels, dtype=object), count // max(len(labels), 1)), pa.string()),
                pa.array(np.concatenate(blocks) if blocks else np.array([], dtype=np.float64)),
            ],
            schema=OUTPUT_SCHEMA,
        )

    def _observed(self, series: list[str] | None, history: pa.Table | None) -> dict[str, Observed]:
        """The history each chosen series is forecast from: stored, or the caller's rows."""
        if history is None:
            return {
                name: Observed(np.asarray(self.meta.history[name], dtype=np.float64), self.history_end)
                for name in self._check_series(series)
            }
        chosen = self._check_series(series) if series else None
        needed = len(next(iter(self.meta.history.values())))  # the stored depth: what the features read
        return fresh_history(
            self.manifest.name,
            history,
            chosen,
            self.meta.series,
            self.frequency,
            needed,
            self.meta.aggregate,
            self.meta.fill,
        )

    def _series_values(
        self,
        name: str,
        observed: np.ndarray[Any, Any],
        steps: IntArray,
        times: pd.DatetimeIndex,
        levels: list[float | None],
        regressors: np.ndarray[Any, Any],
    ) -> np.ndarray[Any, Any]:
        assert self.quantile_model is not None and self.mean_model is not None
        scale = self.meta.scales[name]
        history = observed / scale
        targets = len(history) - 1 + steps
        code, frequency = self.meta.series.index(name), self.frequency
        features = horizon_features(history, targets, steps, times, code, frequency)
        if regressors.shape[1]:
            features = np.column_stack([features, regressors]).astype(np.float32)
        level = origin_level(history, targets, steps, frequency) * scale
        grid_values = np.asarray(self.quantile_model.inplace_predict(features), dtype=np.float64)
        grid_values = np.sort(grid_values + np.asarray(self.meta.offsets[name]), axis=1) * level[:, None]
        mean = np.asarray(self.mean_model.inplace_predict(features), dtype=np.float64) * level
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
            raise InvalidInput(f"horizon must be a whole number of {self.frequency.units}, got {horizon!r}")
        bound = self.frequency.max_horizon
        if not 1 <= int(horizon) <= bound:
            raise InvalidInput(
                f"horizon must be between 1 and {bound} {self.frequency.units} "
                f"for a {self.frequency.name} model, got {horizon}",
                hint=f"a {self.frequency.name} forecast reaches at most {bound} {self.frequency.units} ahead",
                detail={"horizon": int(horizon), "max": bound, "frequency": self.frequency.name},
            )
        return int(horizon)
