"""What a forecast call may bring besides the horizon: future covariate values and fresh history.

A model trained with covariates (other numeric or boolean columns of the training query, such as
a promotion flag or a temperature) uses each covariate's value *at the target step* as a feature,
so a forecast needs those values for every step of the horizon: `future` rows (ts, [series,]
covariates...). `history` rows (ts, [series,] value) replace the history stored in the artifact,
so a model trained last month forecasts from today's data: they are put on the model's frequency
grid with the training's aggregate and fill rules, and the forecast starts the step after the last
given timestamp of each series. Both arrive as Arrow tables (the HTTP route and the engines build
them from JSON rows); every problem is an `InvalidInput` that names the columns, timestamps or
counts involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sqlml.bridge.runtimes.forecast_frequency import Frequency, regular_wide
from sqlml.errors import InvalidInput, TrainingError, close_names

SHOWN_TIMESTAMPS = 5  # how many missing timestamps an error lists


@dataclass
class Observed:
    """One series' history on the model's grid (in the data's units) and its last step."""

    values: np.ndarray[Any, np.dtype[np.float64]]
    end: pd.Timestamp


def covariate_type(values: pd.Series) -> str:  # type: ignore[type-arg]
    """The SQL type a covariate is recorded with in the manifest."""
    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    return "bigint" if pd.api.types.is_integer_dtype(values) else "double"


def is_covariate_dtype(values: pd.Series) -> bool:  # type: ignore[type-arg]
    return bool(pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values))


def _frame(table: pa.Table, what: str) -> pd.DataFrame:
    frame: pd.DataFrame = table.to_pandas()
    if "ts" not in frame.columns:
        raise InvalidInput(
            f"{what} rows need a ts column (the timestamp of each row)",
            hint=f"select the time column as ts, e.g. SELECT day AS ts (columns given: {', '.join(frame.columns)})",
            detail={"columns": list(frame.columns)},
        )
    try:
        ts = pd.to_datetime(frame["ts"], utc=True).dt.tz_convert(None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{what} column ts holds values that are not timestamps", hint=str(exc)[:200]) from None
    if ts.isna().any():
        raise InvalidInput(f"{what} column ts is NULL in {int(ts.isna().sum())} row(s)")
    frame["ts"] = ts.astype("datetime64[us]")
    if "series" in frame.columns:
        frame["series"] = frame["series"].astype(str)
    return frame


def _numeric(frame: pd.DataFrame, column: str, what: str) -> pd.Series:  # type: ignore[type-arg]
    values = frame[column]
    if pd.api.types.is_bool_dtype(values) or values.dtype == object:
        values = values.map(lambda v: float(v) if isinstance(v, bool) else v)
    try:
        return pd.to_numeric(values).astype("float64")
    except (ValueError, TypeError):
        raise InvalidInput(f'{what} column "{column}" must be numeric or boolean', detail={"column": column}) from None


def _shown(times: pd.DatetimeIndex) -> str:
    text = ", ".join(str(t) for t in times[:SHOWN_TIMESTAMPS])
    return text + (f" and {len(times) - SHOWN_TIMESTAMPS} more" if len(times) > SHOWN_TIMESTAMPS else "")


def future_covariates(
    model: str,
    table: pa.Table | None,
    covariates: list[str],
    times: dict[str, pd.DatetimeIndex],
    frequency: Frequency,
) -> dict[str, np.ndarray[Any, np.dtype[np.float64]]]:
    """Per series, the (horizon, covariates) matrix of future values at `times[series]`."""
    if not covariates:
        if table is not None:
            raise InvalidInput(
                f'model "{model}" has no covariates: future values are only for models trained with covariates',
                hint="leave out future =>, or retrain with the covariate columns in the training query",
                detail={"model": model, "covariates": []},
            )
        return {name: np.empty((len(steps), 0)) for name, steps in times.items()}
    names = ", ".join(covariates)
    if table is None or table.num_rows == 0:
        first = next(iter(times.values()))
        raise InvalidInput(
            f'model "{model}" was trained with covariates ({names}): give their values for every step of the '
            f"horizon with future ({len(first)} steps missing: {_shown(first)})",
            hint=f"ml.forecast(..., future => 'SELECT ts, {names} FROM ...'), one row per step after the history",
            detail={"model": model, "covariates": covariates, "missing": [str(t) for t in first[:SHOWN_TIMESTAMPS]]},
        )
    frame = _frame(table, "future")
    absent = [c for c in covariates if c not in frame.columns]
    if absent:
        raise InvalidInput(
            f'future rows lack the covariate column(s) {", ".join(absent)} of model "{model}"',
            hint=f"select ts, {names} (and series for several series)",
            detail={"model": model, "missing_columns": absent, "columns": list(frame.columns)},
        )
    values = pd.DataFrame({c: _numeric(frame, c, "future") for c in covariates})
    values["step"] = frequency.bucket(pd.DatetimeIndex(frame["ts"]))
    by_series = "series" in frame.columns
    if by_series:
        values["series"] = frame["series"].to_numpy()
    keys = ["series", "step"] if by_series else ["step"]
    means = values.groupby(keys)[covariates].mean()
    out = {}
    for name, steps in times.items():
        if not by_series:
            grid: pd.DataFrame | None = means
        else:
            present = name in means.index.get_level_values("series")
            grid = pd.DataFrame(means.xs(name, level="series")) if present else None
        matrix = (
            np.full((len(steps), len(covariates)), np.nan)
            if grid is None
            else grid.reindex(steps).to_numpy(dtype=np.float64)
        )
        holes = np.isnan(matrix)
        if holes.any():
            missing = steps[holes.any(axis=1)]
            columns = [c for j, c in enumerate(covariates) if holes[:, j].any()]
            raise InvalidInput(
                f"future values are missing for {len(missing)} of the {len(steps)} forecast steps"
                + (f' of series "{name}"' if len(times) > 1 or by_series else "")
                + f": column(s) {', '.join(columns)} at {_shown(missing)}",
                hint=f"give one row per {frequency.unit} from {steps[0]} to {steps[-1]} with every covariate non-NULL",
                detail={
                    "model": model,
                    "series": name,
                    "columns": columns,
                    "missing": [str(t) for t in missing[:SHOWN_TIMESTAMPS]],
                    "missing_steps": len(missing),
                },
            )
        out[name] = matrix
    return out


def fresh_history(
    model: str,
    table: pa.Table,
    chosen: list[str] | None,
    known: list[str],
    frequency: Frequency,
    needed: int,
    aggregate: str | None,
    fill: str | None,
) -> dict[str, Observed]:
    """The history rows of each series on the model's grid, at least `needed` steps of each.

    `chosen` (the series the caller asked for, or None for every series the rows hold) must be
    among `known`, the model's series; rows of other series are left out."""
    if table.num_rows == 0:
        raise InvalidInput("history holds no rows", hint="give the series' recent observations: ts, [series,] value")
    frame = _frame(table, "history")
    value = _value_column(frame)
    if "series" not in frame.columns:
        if chosen is None and len(known) > 1:
            raise InvalidInput(
                f'history rows need a series column: model "{model}" knows {len(known)} series',
                hint=f"select the series too, or name one with series => (known: {', '.join(known[:10])})",
                detail={"model": model, "known": known},
            )
        frame["series"] = (chosen or known)[0]
    frame["value"] = _numeric(frame, value, "history")
    frame = frame[["ts", "series", "value"]].dropna(subset=["value"])
    present = list(dict.fromkeys(frame["series"]))
    for name in present if chosen is None else []:
        if name not in known:
            close = close_names(name, known)
            raise InvalidInput(
                f'history holds series "{name}", which model "{model}" does not know',
                hint=f"did you mean {', '.join(map(repr, close))}?" if close else f"known series: {', '.join(known)}",
                detail={"model": model, "series": name, "known": known},
            )
    wanted = chosen if chosen is not None else present
    if not wanted:
        raise InvalidInput("history holds no rows with a value", detail={"model": model})
    observed = {}
    for name in wanted:
        rows = frame[frame["series"] == name]
        if rows.empty:
            raise InvalidInput(
                f'history holds no rows of series "{name}"', detail={"model": model, "series": name, "present": present}
            )
        observed[name] = _on_grid(model, name, rows, frequency, needed, aggregate, fill)
    return observed


def _value_column(frame: pd.DataFrame) -> str:
    if "value" in frame.columns:
        return "value"
    others = [c for c in frame.columns if c not in ("ts", "series")]
    if len(others) == 1:
        return str(others[0])
    raise InvalidInput(
        "history rows need a value column (the observed value of each step)",
        hint=f"select it as value, e.g. SELECT sales AS value (columns given: {', '.join(frame.columns)})",
        detail={"columns": list(frame.columns)},
    )


def _on_grid(
    model: str,
    name: str,
    rows: pd.DataFrame,
    frequency: Frequency,
    needed: int,
    aggregate: str | None,
    fill: str | None,
) -> Observed:
    try:
        wide, _step = regular_wide(rows, frequency.offset, aggregate, fill)
    except TrainingError as error:
        raise InvalidInput(
            f'history of series "{name}": {error.message}',
            hint=f'model "{model}" puts history on its {frequency.name} grid as its training did '
            f"(aggregate {aggregate or 'none'}, fill {fill or 'none'}): one row per {frequency.unit}, without gaps",
            detail={**error.detail, "model": model, "series": name},
        ) from None
    values = wide[name].to_numpy(dtype=np.float64)
    if len(values) < needed:
        raise InvalidInput(
            f'too little history: series "{name}" has {len(values)} {frequency.name} observations; '
            f'model "{model}" needs at least {needed} (its features look {needed} {frequency.units} back)',
            hint=f"give at least {needed} {frequency.units} of history",
            detail={"model": model, "series": name, "observations": len(values), "needed": needed},
        )
    return Observed(values=values[-needed:], end=pd.Timestamp(wide.index[-1]))
