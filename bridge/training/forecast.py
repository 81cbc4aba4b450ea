"""Train forecast models (the demo's `household_power`): XGBoost quantile regression, conformally calibrated.

The series are put on a regular grid of their frequency (inferred from the timestamps or named in
`frequency`; see `runtimes/forecast_frequency.py`), then split in time: targets in the first 60 %
fit the models, the next 20 % (validation) calibrate them, the last 20 % (test) measure them and
are never used otherwise. Each target step is paired with a random horizon from 1 to the
frequency's bound (several when the series are short), so every step of a forecast is trained
and tested. The test split also measures the seasonal-naive forecast (same position one season
back): `beats_seasonal_naive` is 1 when the model's p50 has the lower MAE, and promotion refuses
a version that does not. Calibration is conformalized quantile regression, one-sided per
grid quantile and series: the offset that makes the validation residuals cover exactly that
quantile is added to the model's prediction.

Covariates (`covariates`: other numeric or boolean columns of the frame, such as a promotion flag)
are put on the same grid (averaged within a step, filled by the same `fill` rule, missing values
left to XGBoost) and each adds its value at the target step as a feature; the artifact records
them, so a forecast asks for their future values.

The published model is the one measured (fit on the first 60 %, calibrated on the next 20 %); it
is not refit on all data, so its metrics describe what serves. Its forecasts still start at the
end of the data: the features only need history, and the artifact carries the last weeks of it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from sqlml.bridge.manifest import Column, Manifest, Signature
from sqlml.bridge.registry import Registry
from sqlml.bridge.runtimes.forecast import (
    MEAN_FILE,
    META_FILE,
    QUANTILES_FILE,
    ForecastMeta,
    feature_names,
    horizon_features,
    origin_level,
)
from sqlml.bridge.runtimes.forecast_frequency import Frequency, regular_wide
from sqlml.bridge.runtimes.forecast_inputs import covariate_type, is_covariate_dtype
from sqlml.bridge.training.common import artifact_dir, data_fingerprint, progress_bar, xgboost_progress
from sqlml.data.power import SERIES, SOURCE, load_power_hourly
from sqlml.errors import TrainingError

MODEL_NAME = "household_power"
REPORTED_LEVELS = (0.1, 0.5, 0.9)
# Quantile objectives cost about one tree each a round: 11 keep a full-size fit near half a minute.
DEFAULT_GRID = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975, 0.99)
DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 60,
    "max_depth": 6,
    "learning_rate": 0.15,
    "min_child_weight": 20.0,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "max_bin": 128,
}
# Short series get several horizons a target, up to about this many training rows in all.
TARGET_ROWS = 4_000


def train_forecast(
    registry: Registry,
    *,
    alias: str | None = "production",
    progress: bool = True,
    data: pd.DataFrame | None = None,
    name: str = MODEL_NAME,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
    quantile_grid: tuple[float, ...] = DEFAULT_GRID,
    max_train_rows: int | None = 40_000,
    seed: int = 0,
    frequency: str | None = None,
    aggregate: str | None = None,
    fill: str | None = None,
    covariates: tuple[str, ...] | list[str] = (),
    **params: Any,
) -> Manifest:
    """Fit, calibrate, test and publish a forecast model; returns the stored manifest.

    `data` is a long frame like `load_power_hourly()` (ts, series, value); None loads the demo
    data. `quantile_grid` must hold 0.1, 0.5 and 0.9 and should span 0.01–0.99 (levels outside it
    are clamped to its ends). `max_train_rows` subsamples the training rows (None keeps all).
    `frequency` names the step (default: inferred); `aggregate` (sum, mean, …) buckets rows into
    steps, `fill` (interpolate, zero) fills missing steps; without them either is an error.
    `covariates` names columns of `data` whose value at the target step is a feature.
    `params` override `DEFAULT_PARAMS` (`n_estimators`, `max_depth`, `learning_rate`, …).
    """
    grid = _check_grid(quantile_grid)
    started = time.perf_counter()
    frame = load_power_hourly() if data is None else data
    covariates = _check_covariates(frame, list(covariates))
    wide, step = _wide(frame, frequency, aggregate, fill)
    series = list(wide.columns)
    grids = _covariate_grids(frame, covariates, step, wide, fill)
    observations = len(wide)
    first_target = step.history - 1
    needed = needed_history(step, validation_fraction, test_fraction)
    if observations < needed:
        raise TrainingError(
            f"not enough history: {observations} {step.name} observations a series; need at least {needed} "
            f"(a {step.history}-{step.unit} warm-up, then {step.min_split} {step.units} or more for each of "
            f"train, validation and test)",
            detail={"observations": observations, "needed": needed, "frequency": step.name},
        )
    validation_start = int(observations * (1.0 - test_fraction - validation_fraction))
    test_start = int(observations * (1.0 - test_fraction))
    settings = {**DEFAULT_PARAMS, **params}
    n_rounds = int(settings.pop("n_estimators"))
    scales = {s: _scale(wide[s].to_numpy()[:validation_start]) for s in series}
    rows = _samples(wide, scales, step, first_target, np.random.default_rng(seed), grids)
    rng = np.random.default_rng(seed + 1)
    train, validation, test = (
        _at_most(rows.subset(rows.target < validation_start), max_train_rows, rng),
        rows.subset((rows.target >= validation_start) & (rows.target < test_start)),
        rows.subset(rows.target >= test_start),
    )

    common = {"tree_method": "hist", "seed": seed, **settings}
    dtrain = xgb.QuantileDMatrix(train.features, label=train.label, max_bin=int(settings["max_bin"]))
    with progress_bar(progress) as bar:
        task = bar.add_task(f"training {name}: {len(grid)} quantiles", total=n_rounds)
        quantile_model = xgb.train(
            {**common, "objective": "reg:quantileerror", "quantile_alpha": grid},
            dtrain,
            num_boost_round=n_rounds,
            callbacks=[xgboost_progress(bar, task)],
        )
        task = bar.add_task(f"training {name}: mean", total=n_rounds)
        mean_model = xgb.train(
            {**common, "objective": "reg:squarederror"},
            dtrain,
            num_boost_round=n_rounds,
            callbacks=[xgboost_progress(bar, task)],
        )

    offsets = _conformal_offsets(quantile_model, validation, series, grid)
    nonnegative = {s: bool((wide[s].to_numpy() >= 0).all()) for s in series}
    metrics = _test_metrics(quantile_model, mean_model, offsets, train, test, series, grid, scales, nonnegative)
    metrics["max_horizon"] = float(step.max_horizon)
    metrics["train_seconds"] = round(time.perf_counter() - started, 3)

    meta = ForecastMeta(
        series=series,
        grid=[float(g) for g in grid],
        scales=scales,
        offsets={s: [float(v) for v in offsets[s]] for s in series},
        nonnegative=nonnegative,
        history_end=wide.index[-1].isoformat(),
        history={s: [float(v) for v in wide[s].to_numpy()[-step.history :]] for s in series},
        frequency=step.offset,
        covariates=[{"name": c, "type": covariate_type(frame[c])} for c in covariates],
        aggregate=aggregate,
        fill=fill,
    )
    demo = data is None
    unit_text = "kWh used in the hour starting at ts" if demo else f"the value of the {step.unit} starting at ts"
    manifest = Manifest(
        name=name,
        runtime="forecast",
        task="forecast",
        description="Hourly household electricity use (kWh), up to 168 hours ahead, any quantile p1–p99 or mean."
        if demo
        else f"{step.name.capitalize()} forecast of {len(series)} series, up to {step.max_horizon} {step.units} "
        "ahead, any quantile p1–p99 or mean.",
        signature=Signature(
            inputs=[
                Column(name="series", type="text"),
                Column(name="horizon", type="bigint", description=f"{step.units} ahead, 1 to {step.max_horizon}"),
                Column(name="quantile", type="text", description='"p1" … "p99" or "mean"'),
            ],
            outputs=[
                Column(name="series", type="text"),
                Column(name="ts", type="timestamp"),
                Column(name="quantile", type="text"),
                Column(
                    name="value",
                    type="double",
                    description=unit_text,
                ),
            ],
        ),
        metrics=metrics,
        lineage={
            "source": SOURCE if data is None else "caller-provided frame",
            "rows": len(frame),
            "frequency": step.name,
            "observations": observations,
            "series": series,
            "fingerprint": data_fingerprint(frame),
            "history_start": wide.index[0].isoformat(),
            "history_end": wide.index[-1].isoformat(),
            "split": {
                "train_targets_before": wide.index[validation_start].isoformat(),
                "test_targets_from": wide.index[test_start].isoformat(),
                "train_rows": len(train.label),
                "validation_rows": len(validation.label),
                "test_rows": len(test.label),
            },
            "refit_on_all_data": False,
        },
        params={
            "n_estimators": n_rounds,
            **settings,
            "quantile_grid": [float(g) for g in grid],
            "max_train_rows": max_train_rows,
            "frequency": step.name,
            "aggregate": aggregate,
            "fill": fill,
            "covariates": meta.covariates,
            "features": feature_names(step, covariates),
            "calibration": "conformalized quantile regression, one-sided offsets per series and quantile",
        },
    )
    with artifact_dir() as folder:
        quantile_model.save_model(str(folder / QUANTILES_FILE))
        mean_model.save_model(str(folder / MEAN_FILE))
        (folder / META_FILE).write_text(meta.to_json())
        return registry.publish(manifest, folder, alias=alias)


FIELDS = ("features", "label", "level", "value", "target", "series", "naive")


class _Rows:
    """Training rows of all series: features and label (the value over the origin's level), and
    for evaluation the value and the seasonal-naive forecast in series-scale units."""

    def __init__(self, *columns: np.ndarray[Any, Any]):
        self.features, self.label, self.level, self.value, self.target, self.series, self.naive = columns

    def subset(self, mask: np.ndarray[Any, Any]) -> _Rows:
        return _Rows(*(getattr(self, name)[mask] for name in FIELDS))


def _check_grid(grid: tuple[float, ...]) -> np.ndarray[Any, Any]:
    levels = np.asarray(sorted(set(float(g) for g in grid)))
    if levels.size < 3 or levels[0] <= 0.0 or levels[-1] >= 1.0:
        raise TrainingError(f"quantile_grid must hold levels strictly between 0 and 1, got {list(grid)}")
    absent = [lv for lv in REPORTED_LEVELS if not np.isclose(levels, lv).any()]
    if absent:
        raise TrainingError(f"quantile_grid must include {', '.join(map(str, absent))} (they are measured)")
    return levels


def _at_most(rows: _Rows, limit: int | None, rng: np.random.Generator) -> _Rows:
    if limit is None or len(rows.label) <= limit:
        return rows
    chosen = np.zeros(len(rows.label), dtype=bool)
    chosen[rng.choice(len(rows.label), size=limit, replace=False)] = True
    return rows.subset(chosen)


def _wide(
    frame: pd.DataFrame, frequency: str | None, aggregate: str | None, fill: str | None
) -> tuple[pd.DataFrame, Frequency]:
    """Long (ts, series, value) -> one column a series on a gap-free grid, the demo's series first."""
    wide, step = regular_wide(frame, frequency, aggregate, fill)
    wide.columns = [str(c) for c in wide.columns]
    known = [s for s in SERIES if s in wide.columns]
    return wide[known + sorted(c for c in wide.columns if c not in SERIES)], step


def needed_history(step: Frequency, validation_fraction: float, test_fraction: float) -> int:
    """The fewest steps a series needs: the warm-up, then `min_split` targets in each split."""
    train_share = 1.0 - validation_fraction - test_fraction
    if train_share <= 0 or validation_fraction <= 0 or test_fraction <= 0:
        raise TrainingError("validation_fraction and test_fraction must be positive and sum to less than 1")
    count = int((step.history - 1 + step.min_split) / train_share)
    while not _splits_fit(count, step, validation_fraction, test_fraction):
        count += 1
    return count


def _splits_fit(count: int, step: Frequency, validation_fraction: float, test_fraction: float) -> bool:
    validation_start = int(count * (1.0 - test_fraction - validation_fraction))
    test_start = int(count * (1.0 - test_fraction))
    least = step.min_split
    return (
        validation_start - (step.history - 1) >= least
        and test_start - validation_start >= least
        and (count - test_start >= least)
    )


def _check_covariates(frame: pd.DataFrame, covariates: list[str]) -> list[str]:
    reserved = {"ts", "series", "value"}
    for name in covariates:
        if name in reserved or name not in frame.columns:
            raise TrainingError(
                f'covariate "{name}" is not a column of the training data besides ts, series and value',
                detail={"covariate": name, "columns": list(frame.columns)},
            )
        if not is_covariate_dtype(frame[name]):
            raise TrainingError(
                f'covariate "{name}" must be numeric or boolean, not {frame[name].dtype}',
                hint="cast it in the query, or leave it out",
                detail={"covariate": name},
            )
    return list(dict.fromkeys(covariates))


def _covariate_grids(
    frame: pd.DataFrame, covariates: list[str], step: Frequency, wide: pd.DataFrame, fill: str | None
) -> dict[str, np.ndarray[Any, Any]]:
    """Per series, a (steps, covariates) matrix on `wide`'s grid: values averaged within a step,
    missing steps filled by `fill` (else NaN, which XGBoost treats as missing)."""
    if not covariates:
        return {name: np.empty((len(wide), 0)) for name in wide.columns}
    buckets = step.bucket(pd.DatetimeIndex(pd.DatetimeIndex(frame["ts"]).astype("datetime64[us]")))
    values = pd.DataFrame(
        {c: frame[c].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan) for c in covariates}
    )
    values["ts"], values["series"] = buckets, frame["series"].astype(str).to_numpy()
    means = values.groupby(["series", "ts"])[covariates].mean()
    out = {}
    for name in wide.columns:
        own = means.xs(name, level="series") if name in means.index.get_level_values("series") else None
        grid = pd.DataFrame(index=wide.index, columns=covariates, dtype="float64") if own is None else own
        grid = grid.reindex(wide.index)
        if fill == "interpolate":
            grid = grid.interpolate(method="linear", limit_direction="both")
        elif fill == "zero":
            grid = grid.fillna(0.0)
        out[name] = grid.to_numpy(dtype=np.float64)
    return out


def _scale(values: np.ndarray[Any, Any]) -> float:
    level = float(np.mean(np.abs(values)))
    return level if level > 1e-9 else 1.0


def _samples(
    wide: pd.DataFrame,
    scales: dict[str, float],
    step: Frequency,
    first_target: int,
    rng: np.random.Generator,
    grids: dict[str, np.ndarray[Any, Any]],
) -> _Rows:
    """Rows per (series, target step), each with a random horizon in 1..max_horizon; short series
    get several horizons a target (up to `TARGET_ROWS` rows in all, at most one per horizon)."""
    steps = np.arange(first_target, len(wide), dtype=np.int64)
    repeats = int(np.clip(np.ceil(TARGET_ROWS / max(len(steps) * wide.shape[1], 1)), 1, step.max_horizon))
    targets = np.repeat(steps, repeats)
    parts = []
    for code, name in enumerate(wide.columns):
        values = wide[name].to_numpy() / scales[name]
        horizons = rng.integers(1, step.max_horizon + 1, size=len(targets)).astype(np.int64)
        times = pd.DatetimeIndex(wide.index[targets])
        features = horizon_features(values, targets, horizons, times, code, step)
        if grids[name].shape[1]:  # each covariate at the target step
            features = np.column_stack([features, grids[name][targets]]).astype(np.float32)
        level = origin_level(values, targets, horizons, step)
        label = values[targets] / level if step.relative else values[targets]
        seasons_back = (horizons + step.season - 1) // step.season
        naive = values[targets - step.season * seasons_back]  # the latest same position one season back
        parts.append(_Rows(features, label, level, values[targets], targets, np.full(len(targets), code), naive))
    return _Rows(*(np.concatenate([getattr(part, f) for part in parts]) for f in FIELDS))


def _conformal_offsets(
    model: xgb.Booster, validation: _Rows, series: list[str], grid: np.ndarray[Any, Any]
) -> dict[str, np.ndarray[Any, Any]]:
    """Per series and grid quantile, the shift that makes that quantile's validation coverage exact."""
    predicted = np.asarray(model.inplace_predict(validation.features), dtype=np.float64)
    offsets = {}
    for code, name in enumerate(series):
        mine = validation.series == code
        residuals = validation.label[mine][:, None] - predicted[mine]
        offsets[name] = np.array([np.quantile(residuals[:, j], level) for j, level in enumerate(grid)])
    return offsets


def _pinball(y: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any], level: float) -> float:
    difference = y - predicted
    return float(np.mean(np.maximum(level * difference, (level - 1.0) * difference)))


def _test_metrics(
    quantile_model: xgb.Booster,
    mean_model: xgb.Booster,
    offsets: dict[str, np.ndarray[Any, Any]],
    train: _Rows,
    test: _Rows,
    series: list[str],
    grid: np.ndarray[Any, Any],
    scales: dict[str, float],
    nonnegative: dict[str, bool],
) -> dict[str, float]:
    """Coverage, pinball loss and p50 MAE (in the data's units) on the test split, against a
    seasonal-naive forecast (the point forecast for MAE; plus its training residuals' quantiles for
    pinball); the model's quantiles are post-processed exactly as the runtime does (sorted, clipped
    at zero)."""
    raw = np.asarray(quantile_model.inplace_predict(test.features), dtype=np.float64)
    mean = np.asarray(mean_model.inplace_predict(test.features), dtype=np.float64)
    columns = [int(np.argmin(np.abs(grid - level))) for level in REPORTED_LEVELS]
    per_series: dict[str, dict[str, float]] = {}
    pooled: dict[str, list[np.ndarray[Any, Any]]] = {"y": [], "model": [], "naive": [], "mean": [], "point": []}
    for code, name in enumerate(series):
        mine, scale = test.series == code, scales[name]
        y = test.value[mine] * scale
        multiplier = test.level[mine] * scale
        quantiles = np.sort(raw[mine] + offsets[name], axis=1)[:, columns] * multiplier[:, None]
        if nonnegative[name]:
            quantiles = np.maximum(quantiles, 0.0)
        own_train = train.series == code
        residual_levels = np.quantile(train.value[own_train] - train.naive[own_train], REPORTED_LEVELS)
        naive = (test.naive[mine][:, None] + residual_levels[None, :]) * scale
        point = test.naive[mine] * scale
        per_series[name] = {
            "coverage_p10_p90": float(np.mean((y >= quantiles[:, 0]) & (y <= quantiles[:, 2]))),
            "pinball_loss": float(np.mean([_pinball(y, quantiles[:, j], lv) for j, lv in enumerate(REPORTED_LEVELS)])),
            "pinball_loss_seasonal_naive": float(
                np.mean([_pinball(y, naive[:, j], lv) for j, lv in enumerate(REPORTED_LEVELS)])
            ),
            "mae": float(np.mean(np.abs(y - quantiles[:, 1]))),
            "mae_seasonal_naive": float(np.mean(np.abs(y - point))),
        }
        pooled["y"].append(y)
        pooled["model"].append(quantiles)
        pooled["naive"].append(naive)
        pooled["point"].append(point)
        pooled["mean"].append(mean[mine] * multiplier)
    y = np.concatenate(pooled["y"])
    model_q, naive_q = np.concatenate(pooled["model"]), np.concatenate(pooled["naive"])
    mae = float(np.mean(np.abs(y - model_q[:, 1])))
    mae_naive = float(np.mean(np.abs(y - np.concatenate(pooled["point"]))))
    metrics = {
        "coverage_p10_p90": float(np.mean((y >= model_q[:, 0]) & (y <= model_q[:, 2]))),
        "pinball_loss": float(np.mean([_pinball(y, model_q[:, j], lv) for j, lv in enumerate(REPORTED_LEVELS)])),
        "pinball_loss_seasonal_naive": float(
            np.mean([_pinball(y, naive_q[:, j], lv) for j, lv in enumerate(REPORTED_LEVELS)])
        ),
        "mae": mae,
        "mae_seasonal_naive": mae_naive,
        "beats_seasonal_naive": 1.0 if mae < mae_naive else 0.0,
        "rmse_mean": float(np.sqrt(np.mean((np.concatenate(pooled["mean"]) - y) ** 2))),
        "test_rows": float(len(y)),
    }
    for name, values in per_series.items():
        for key, value in values.items():
            metrics[f"{key}.{name}"] = value
    return metrics
