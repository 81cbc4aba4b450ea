"""Train the `household_power` forecast model: XGBoost quantile regression, conformally calibrated.

The hourly history is split in time: targets in the first 60 % fit the models, the next 20 %
(validation) calibrate them, the last 20 % (test) measure them and are never used otherwise. Each
target hour is paired with a random horizon from 1 to 168 hours, so every step of a week-ahead
forecast is trained and tested. Calibration is conformalized quantile regression, one-sided per
grid quantile and series: the offset that makes the validation residuals cover exactly that
quantile is added to the model's prediction.

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
    FEATURES,
    HISTORY_HOURS,
    MAX_HORIZON,
    MEAN_FILE,
    META_FILE,
    QUANTILES_FILE,
    ForecastMeta,
    horizon_features,
)
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
    **params: Any,
) -> Manifest:
    """Fit, calibrate, test and publish a forecast model; returns the stored manifest.

    `data` is a long frame like `load_power_hourly()` (ts, series, value); None loads the demo
    data. `quantile_grid` must hold 0.1, 0.5 and 0.9 and should span 0.01–0.99 (levels outside it
    are clamped to its ends). `max_train_rows` subsamples the training rows (None keeps all).
    `params` override `DEFAULT_PARAMS` (`n_estimators`, `max_depth`, `learning_rate`, …).
    """
    grid = _check_grid(quantile_grid)
    started = time.perf_counter()
    frame = load_power_hourly() if data is None else data
    wide = _wide_hourly(frame)
    series = list(wide.columns)
    hours = len(wide)
    validation_start = int(hours * (1.0 - test_fraction - validation_fraction))
    test_start = int(hours * (1.0 - test_fraction))
    first_target = HISTORY_HOURS - 1
    if validation_start - first_target < 50 or test_start - validation_start < 50 or hours - test_start < 50:
        raise TrainingError(
            f"not enough history: {hours} hours; need at least {first_target + 150} "
            f"(a {HISTORY_HOURS}-hour warm-up and 50 hours for each of train, validation and test)"
        )
    settings = {**DEFAULT_PARAMS, **params}
    n_rounds = int(settings.pop("n_estimators"))
    scales = {s: _scale(wide[s].to_numpy()[:validation_start]) for s in series}
    rows = _samples(wide, scales, first_target, np.random.default_rng(seed))
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
    metrics["train_seconds"] = round(time.perf_counter() - started, 3)

    meta = ForecastMeta(
        series=series,
        grid=[float(g) for g in grid],
        scales=scales,
        offsets={s: [float(v) for v in offsets[s]] for s in series},
        nonnegative=nonnegative,
        history_end=wide.index[-1].isoformat(),
        history={s: [float(v) for v in wide[s].to_numpy()[-HISTORY_HOURS:]] for s in series},
    )
    manifest = Manifest(
        name=name,
        runtime="forecast",
        task="forecast",
        description="Hourly household electricity use (kWh), up to 168 hours ahead, any quantile p1–p99 or mean.",
        signature=Signature(
            inputs=[
                Column(name="series", type="text"),
                Column(name="horizon", type="bigint", description=f"hours ahead, 1 to {MAX_HORIZON}"),
                Column(name="quantile", type="text", description='"p1" … "p99" or "mean"'),
            ],
            outputs=[
                Column(name="series", type="text"),
                Column(name="ts", type="timestamp"),
                Column(name="quantile", type="text"),
                Column(name="value", type="double", description="kWh used in the hour starting at ts"),
            ],
        ),
        metrics=metrics,
        lineage={
            "source": SOURCE if data is None else "caller-provided frame",
            "rows": len(frame),
            "hours": hours,
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
            "features": list(FEATURES),
            "calibration": "conformalized quantile regression, one-sided offsets per series and quantile",
        },
    )
    with artifact_dir() as folder:
        quantile_model.save_model(str(folder / QUANTILES_FILE))
        mean_model.save_model(str(folder / MEAN_FILE))
        (folder / META_FILE).write_text(meta.to_json())
        return registry.publish(manifest, folder, alias=alias)


class _Rows:
    """Training rows of all series: features, scaled label, and for evaluation the raw values."""

    def __init__(
        self,
        features: np.ndarray[Any, Any],
        label: np.ndarray[Any, Any],
        target: np.ndarray[Any, Any],
        series: np.ndarray[Any, Any],
        naive: np.ndarray[Any, Any],
    ):
        self.features, self.label, self.target, self.series, self.naive = features, label, target, series, naive

    def subset(self, mask: np.ndarray[Any, Any]) -> _Rows:
        return _Rows(self.features[mask], self.label[mask], self.target[mask], self.series[mask], self.naive[mask])


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


def _wide_hourly(frame: pd.DataFrame) -> pd.DataFrame:
    """Long (ts, series, value) -> one column a series on a gap-free hourly index."""
    missing = {"ts", "series", "value"} - set(frame.columns)
    if missing:
        raise TrainingError(f"the training data lacks column(s) {', '.join(sorted(missing))}")
    wide = frame.pivot_table(index="ts", columns="series", values="value", aggfunc="mean")
    wide.index = pd.DatetimeIndex(wide.index).astype("datetime64[us]")
    full = pd.date_range(wide.index.min(), wide.index.max(), freq="h").astype("datetime64[us]")
    wide = wide.reindex(full).interpolate(method="linear", limit_direction="both")
    known = [s for s in SERIES if s in wide.columns]
    ordered = known + sorted(str(c) for c in wide.columns if c not in SERIES)
    return wide[ordered].astype("float64")


def _scale(values: np.ndarray[Any, Any]) -> float:
    level = float(np.mean(np.abs(values)))
    return level if level > 1e-9 else 1.0


def _samples(wide: pd.DataFrame, scales: dict[str, float], first_target: int, rng: np.random.Generator) -> _Rows:
    """One row per (series, target hour) with a random horizon in 1..MAX_HORIZON."""
    targets = np.arange(first_target, len(wide), dtype=np.int64)
    parts = []
    for code, name in enumerate(wide.columns):
        values = wide[name].to_numpy() / scales[name]
        horizons = rng.integers(1, MAX_HORIZON + 1, size=len(targets)).astype(np.int64)
        features = horizon_features(values, targets, horizons, pd.DatetimeIndex(wide.index[targets]), code)
        parts.append(
            _Rows(
                features,
                values[targets],
                targets,
                np.full(len(targets), code),
                values[targets - MAX_HORIZON],  # seasonal naive: same hour last week
            )
        )
    fields = ("features", "label", "target", "series", "naive")
    return _Rows(*(np.concatenate([getattr(part, f) for part in parts]) for f in fields))


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
    """Coverage and pinball loss (kWh) on the test split, against a seasonal-naive forecast; the
    model's quantiles are post-processed exactly as the runtime does (sorted, clipped at zero)."""
    raw = np.asarray(quantile_model.inplace_predict(test.features), dtype=np.float64)
    mean = np.asarray(mean_model.inplace_predict(test.features), dtype=np.float64)
    columns = [int(np.argmin(np.abs(grid - level))) for level in REPORTED_LEVELS]
    per_series: dict[str, dict[str, float]] = {}
    pooled: dict[str, list[np.ndarray[Any, Any]]] = {"y": [], "model": [], "naive": [], "mean": []}
    for code, name in enumerate(series):
        mine, scale = test.series == code, scales[name]
        y = test.label[mine] * scale
        quantiles = np.sort(raw[mine] + offsets[name], axis=1)[:, columns] * scale
        if nonnegative[name]:
            quantiles = np.maximum(quantiles, 0.0)
        own_train = train.series == code
        residual_levels = np.quantile(train.label[own_train] - train.naive[own_train], REPORTED_LEVELS)
        naive = (test.naive[mine][:, None] + residual_levels[None, :]) * scale
        per_series[name] = {
            "coverage_p10_p90": float(np.mean((y >= quantiles[:, 0]) & (y <= quantiles[:, 2]))),
            "pinball_loss": float(np.mean([_pinball(y, quantiles[:, j], lv) for j, lv in enumerate(REPORTED_LEVELS)])),
            "pinball_loss_seasonal_naive": float(
                np.mean([_pinball(y, naive[:, j], lv) for j, lv in enumerate(REPORTED_LEVELS)])
            ),
        }
        pooled["y"].append(y)
        pooled["model"].append(quantiles)
        pooled["naive"].append(naive)
        pooled["mean"].append(mean[mine] * scale)
    y = np.concatenate(pooled["y"])
    model_q, naive_q = np.concatenate(pooled["model"]), np.concatenate(pooled["naive"])
    metrics = {
        "coverage_p10_p90": float(np.mean((y >= model_q[:, 0]) & (y <= model_q[:, 2]))),
        "pinball_loss": float(np.mean([_pinball(y, model_q[:, j], lv) for j, lv in enumerate(REPORTED_LEVELS)])),
        "pinball_loss_seasonal_naive": float(
            np.mean([_pinball(y, naive_q[:, j], lv) for j, lv in enumerate(REPORTED_LEVELS)])
        ),
        "rmse_mean": float(np.sqrt(np.mean((np.concatenate(pooled["mean"]) - y) ** 2))),
        "test_rows": float(len(y)),
    }
    for name, values in per_series.items():
        for key, value in values.items():
            metrics[f"{key}.{name}"] = value
    return metrics
