"""`evaluate` for forecast models: how the served forecast did on what happened next.

The rows are observations that came after the version's stored history: `ts`, `series` (when the
model has several), `value`, and the covariates when the model was trained with them (they are
the forecast's future values). The bridge forecasts p10, p50 and p90 from the stored history, as
`ml.forecast` serves them, far enough to reach the latest row (at most the frequency's bound),
and compares each row with the forecast of its step. Reported, as the trainer reports on its test
split: `pinball_loss` (the mean over p10, p50 and p90), `coverage_p10_p90`, `mae` (of p50), and the
seasonal-naive forecast's `mae_seasonal_naive` (the latest same position a season back in the
stored history: same weekday last week for days, same month last year for months) with
`beats_seasonal_naive`. Rows at or before the end of the stored history, past the horizon bound,
or with a NULL value are left out and counted in `skipped_rows`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sqlml.bridge.host import LoadedModel, ModelHost
from sqlml.errors import InvalidInput

LEVELS = {"p10": 0.1, "p50": 0.5, "p90": 0.9}


def evaluate_forecast(host: ModelHost, loaded: LoadedModel, table: pa.Table) -> dict[str, Any]:
    """Metrics of the forecast model `loaded` on the observations in `table`."""
    runtime: Any = loaded.runtime
    name = loaded.manifest.name
    frequency, history_end = runtime.frequency, pd.Timestamp(runtime.history_end)
    known: list[str] = list(runtime.meta.series)
    actuals = _actuals(name, table, known, frequency)
    ahead = _steps_ahead(actuals["step"], history_end, frequency)
    usable = actuals["value"].notna() & (ahead >= 1)
    kept = actuals[usable.to_numpy()].assign(ahead=ahead[usable.to_numpy()])
    if kept.empty:
        raise InvalidInput(
            f'no row of the evaluation falls within the forecast of model "{name}": give observations of the '
            f"{frequency.max_horizon} {frequency.units} after its history ends ({history_end})",
            hint=f"SELECT ts, value FROM ... WHERE ts > '{history_end}'",
            detail={"history_end": str(history_end), "max_horizon": frequency.max_horizon},
        )
    series = sorted(set(kept["series"]))
    future = table if runtime.covariates else None
    forecast = host.forecast_loaded(loaded, series, int(kept["ahead"].max()), list(LEVELS), future).to_pandas()
    wide = forecast.pivot_table(index=["series", "ts"], columns="quantile", values="value")
    predicted = wide.reindex(pd.MultiIndex.from_arrays([kept["series"], kept["step"]])).to_numpy()
    y = kept["value"].to_numpy(dtype=np.float64)
    quantiles = {label: predicted[:, list(wide.columns).index(label)] for label in LEVELS}
    naive = np.asarray([_seasonal_naive(runtime, s, a) for s, a in zip(kept["series"], kept["ahead"], strict=True)])
    mae, mae_naive = float(np.mean(np.abs(y - quantiles["p50"]))), float(np.mean(np.abs(y - naive)))
    metrics = {
        "pinball_loss": float(np.mean([_pinball(y, quantiles[label], level) for label, level in LEVELS.items()])),
        "coverage_p10_p90": float(np.mean((y >= quantiles["p10"]) & (y <= quantiles["p90"]))),
        "mae": mae,
        "mae_seasonal_naive": mae_naive,
        "beats_seasonal_naive": 1.0 if mae < mae_naive else 0.0,
        "max_steps_ahead": float(kept["ahead"].max()),
    }
    return {
        "model": name,
        "version": loaded.manifest.version,
        "rows": len(kept),
        "skipped_rows": table.num_rows - len(kept),
        "metrics": metrics,
    }


def _actuals(model: str, table: pa.Table, known: list[str], frequency: Any) -> pd.DataFrame:
    """(series, step, value) of each row: its timestamp on the model's grid, in UTC."""
    frame: pd.DataFrame = table.to_pandas()
    absent = [c for c in ("ts", "value") if c not in frame.columns]
    if absent:
        raise InvalidInput(
            f"the rows of a forecast evaluation need ts and value columns (missing: {', '.join(absent)})",
            hint="SELECT day AS ts, sales AS value FROM ... (and series, for a model of several series)",
            detail={"columns": list(frame.columns)},
        )
    try:
        ts = pd.DatetimeIndex(pd.to_datetime(frame["ts"], utc=True).dt.tz_convert(None))
    except (ValueError, TypeError):
        raise InvalidInput("the evaluation column ts holds values that are not timestamps") from None
    if "series" in frame.columns:
        series = frame["series"].astype(str)
    elif len(known) == 1:
        series = pd.Series([known[0]] * len(frame))
    else:
        raise InvalidInput(
            f'model "{model}" forecasts {len(known)} series: the rows need a series column',
            detail={"series": known},
        )
    unknown = sorted(set(series) - set(known))
    if unknown:
        raise InvalidInput(
            f'model "{model}" has no series {", ".join(map(repr, unknown[:5]))}', detail={"known": known}
        )
    try:
        value = pd.to_numeric(frame["value"]).astype("float64")
    except (ValueError, TypeError):
        raise InvalidInput("the evaluation column value must be numeric") from None
    return pd.DataFrame(
        {"series": series.to_numpy(), "step": frequency.bucket(ts.astype("datetime64[us]")), "value": value}
    )


def _steps_ahead(steps: pd.Series, history_end: pd.Timestamp, frequency: Any) -> pd.Series:  # type: ignore[type-arg]
    """How many steps after the stored history each row's step is, 1 to the horizon bound; 0 for a
    step inside the history or past the bound."""
    position = {stamp: i + 1 for i, stamp in enumerate(frequency.after(history_end, int(frequency.max_horizon)))}
    return steps.map(lambda stamp: position.get(stamp, 0)).astype("int64")


def _seasonal_naive(runtime: Any, series: str, ahead: int) -> float:
    """The value a season back of the step `ahead` after the stored history, or further back (whole
    seasons) until the stored history has it: what the trainer's baseline predicts."""
    history = runtime.meta.history[series]
    season = int(runtime.frequency.season)
    seasons_back = -(-int(ahead) // season)
    return float(history[len(history) - 1 + int(ahead) - season * seasons_back])


def _pinball(y: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any], level: float) -> float:
    difference = y - predicted
    return float(np.mean(np.maximum(level * difference, (level - 1.0) * difference)))
