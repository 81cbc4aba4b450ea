"""Forecast jobs: quantile models from a (time, series, value) query, one global or per series.

The rows become the long frame `sqlml.bridge.training.forecast.train_forecast` reads (`ts`,
`series`, `value`; the spec's target is the value, `params.time_column` / `params.series_column`
name the others, default `ts` / `series`; no series column means one series named after the
target). The frequency is inferred from the timestamps unless `params.frequency` names it;
`params.aggregate` (sum, mean, …) buckets rows into its steps and `params.fill` fills missing
steps. That trainer publishes into a registry, so each fit publishes into a scratch registry in
a temporary folder and the job copies the artifact out: the real registry only ever sees finished
versions, with the job's lineage.

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


def long_frame(spec: JobSpec, table: pa.Table) -> pd.DataFrame:
    time_column, series_column = column_names(spec)
    ts = pd.to_datetime(table[time_column].to_pandas())
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert(None)  # UTC wall clock: the forecast runtime works in naive wall-clock steps
    series = table[series_column].to_pandas().astype(str) if series_column in table.column_names else spec.target
    frame = pd.DataFrame({"ts": ts, "series": series, "value": table[spec.target].to_pandas().astype("float64")})
    return frame.dropna()


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


def _unpack(answer: dict[str, Any], folder: Path) -> Trained:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in answer["files"].items():
        (folder / name).write_bytes(data)
    manifest = Manifest.model_validate(answer["manifest"]).model_copy(update={"version": 0})
    return manifest, folder


def train_forecast_job(job_id: str, spec: JobSpec, table: pa.Table, folder: Path, progress: Any) -> list[Trained]:
    frame = long_frame(spec, table)
    params = {k: v for k, v in spec.params.items() if k in TRAINER_PARAMS}
    per_series = bool(spec.params.get("per_series", spec.backend == "ray"))
    if not per_series:
        progress(0.2, f"fitting one model over {frame['series'].nunique()} series")
        return [_unpack(fit_one(frame, spec.model, params), folder)]
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
    return [_unpack(answer, folder / f"series_{i}") for i, answer in enumerate(answers)]
