"""Forecast jobs: quantile models from a (time, series, value) query, one global or per series.

The rows become the long frame `sqlml.bridge.training.forecast.train_forecast` reads (`ts`,
`series`, `value`; the spec's target is the value, `params.time_column` / `params.series_column`
name the others, default `ts` / `series`; no series column means one series named after the
target). The frequency is inferred from the timestamps unless `params.frequency` names it;
`params.aggregate` (sum, mean, …) buckets rows into its steps and `params.fill` fills missing
steps. Every other numeric or boolean column (or those `features` names; `params.exclude` leaves
some out) is a covariate: its value at the target step is a feature, and a forecast takes its
future values (`ml.forecast(..., future => ...)`); other columns are left out, and the job's log
and the version's lineage say so. That trainer publishes into a registry, so each fit publishes
into a scratch registry in a temporary folder and the job copies the artifact out: the real
registry only ever sees finished versions, with the job's lineage.

- `local`: one global model over every series (what `ml.forecast` serves by default).
- `ray`: one model per series, each fitted in its own Ray task, in parallel, published as model
  `<model>_<series>` (series name lower-cased, other characters as `_`).
  `params.per_series` (true/false) overrides the default of either backend.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from sqlml.bridge.jobs.spec import JobSpec
from sqlml.bridge.manifest import Manifest
from sqlml.bridge.registry import MANIFEST, Registry
from sqlml.errors import BadRequest, TrainingError

Trained = tuple[Manifest, Path]
TRAINER_PARAMS = frozenset(
    {
        "n_estimators",
        "max_depth",
        "learning_rate",
        "min_child_weight",
        "subsample",
        "colsample_bytree",
        "max_bin",
        "validation_fraction",
        "test_fraction",
        "seed",
        "frequency",
        "aggregate",
        "fill",
    }
)


def column_names(spec: JobSpec) -> tuple[str, str]:
    return str(spec.params.get("time_column", "ts")), str(spec.params.get("series_column", "series"))


def check_forecast_columns(spec: JobSpec, types: dict[str, str]) -> None:
    time_column, _series = column_names(spec)
    if time_column not in types:
        raise BadRequest(
            f'forecast training needs a time column "{time_column}"',
            hint="name it ts in the query, or set params.time_column",
            detail={"columns": list(types)},
        )
    if not types[time_column].startswith(("timestamp", "date")):
        raise BadRequest(f'the time column "{time_column}" must be a timestamp, not {types[time_column]}')
    if not types[spec.target].startswith(("int", "uint", "double", "float", "decimal")):
        raise BadRequest(f'the target column "{spec.target}" must be numeric, not {types[spec.target]}')


def series_model_name(model: str, series: str) -> str:
    slug = re.sub(r"[^a-z0-9_]+", "_", series.lower()).strip("_") or "series"
    return f"{model}_{slug}"[:63]


def covariate_columns(spec: JobSpec, table: pa.Table) -> tuple[list[str], list[str]]:
    """The covariates of a forecast job and the columns left out (neither numeric nor boolean)."""
    time_column, series_column = column_names(spec)
    excluded = spec.params.get("exclude") or []
    excluded = [excluded] if isinstance(excluded, str) else list(excluded)
    others = [c for c in table.column_names if c not in (time_column, series_column, spec.target)]
    candidates = [c for c in (spec.features or others) if c in others and c not in excluded]
    kept = [c for c in candidates if _is_covariate(table.schema.field(c).type)]
    return kept, [c for c in others if c not in kept]


def _is_covariate(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
                or pa.types.is_boolean(kind))  # fmt: skip


def long_frame(spec: JobSpec, table: pa.Table, covariates: list[str] | None = None) -> pd.DataFrame:
    time_column, series_column = column_names(spec)
    ts = pd.to_datetime(table[time_column].to_pandas())
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert(None)  # UTC wall clock: the forecast runtime works in naive wall-clock steps
    series = table[series_column].to_pandas().astype(str) if series_column in table.column_names else spec.target
    frame = pd.DataFrame({"ts": ts, "series": series, "value": table[spec.target].to_pandas().astype("float64")})
    for name in covariates or []:
        column = table[name]
        kind = column.type
        frame[name] = (
            pd.array(column.to_pylist(), dtype="boolean")
            if pa.types.is_boolean(kind)
            else column.cast(pa.float64()).to_pandas().to_numpy()
            if pa.types.is_decimal(kind)
            else column.to_pandas().to_numpy()
        )
    return frame.dropna(subset=["ts", "value"])  # a NULL covariate is a missing value, not a dropped step


def fit_one(frame: pd.DataFrame, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Fit one forecast model on `frame`: its manifest (JSON-able) and artifact files (bytes).

    Plain data in and out, so it runs the same in this process and as a Ray task on another node.
    """
    from sqlml.bridge.training.forecast import train_forecast

    with tempfile.TemporaryDirectory(prefix="sqlml-forecast-") as scratch:
        registry = Registry(scratch)
        manifest = train_forecast(registry, alias=None, progress=False, data=frame, name=name, **params)
        source = registry.local_path(manifest.name, manifest.version)
        files = {p.name: p.read_bytes() for p in source.iterdir() if p.is_file() and p.name != MANIFEST}
    return {"manifest": manifest.model_dump(mode="json"), "files": files}


def _unpack(answer: dict[str, Any], folder: Path, noted: dict[str, Any]) -> Trained:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in answer["files"].items():
        (folder / name).write_bytes(data)
    manifest = Manifest.model_validate(answer["manifest"])
    manifest = manifest.model_copy(update={"version": 0, "lineage": {**manifest.lineage, **noted}})
    return manifest, folder


def train_forecast_job(job_id: str, spec: JobSpec, table: pa.Table, folder: Path, progress: Any) -> list[Trained]:
    covariates, left_out = covariate_columns(spec, table)
    frame = long_frame(spec, table, covariates)
    params: dict[str, Any] = {k: v for k, v in spec.params.items() if k in TRAINER_PARAMS}
    params["covariates"] = covariates
    if covariates:
        progress(0.15, f"covariates (their value at each forecast step is a feature): {', '.join(covariates)}")
    if left_out:
        progress(0.15, f"left out (not numeric or boolean): {', '.join(left_out)}")
    noted = {"covariates": covariates, "left_out_columns": left_out}
    per_series = bool(spec.params.get("per_series", spec.backend == "ray"))
    if not per_series:
        progress(0.2, f"fitting one model over {frame['series'].nunique()} series")
        return [_unpack(fit_one(frame, spec.model, params), folder, noted)]
    names = sorted(frame["series"].unique())
    items = [(frame[frame["series"] == s], series_model_name(spec.model, s), params) for s in names]
    progress(0.2, f"fitting {len(items)} per-series models ({spec.backend})")
    if spec.backend == "ray":
        from sqlml.bridge.jobs import ray_backend

        answers = ray_backend.map_series(fit_one, items, cpus_per_task=spec.resources.cpus_per_worker)
    else:
        answers = [fit_one(*item) for item in items]
    if not answers:
        raise TrainingError("no series to fit")
    return [_unpack(answer, folder / f"series_{i}", noted) for i, answer in enumerate(answers)]
