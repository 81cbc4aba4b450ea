"""What each task trains, on either backend: rows in, an artifact folder and its manifest out.

Every trainer here gets the job's spec, its Arrow rows, the folder to write the artifact into and a
`progress(fraction, message)` callback, and returns the manifest to publish (metrics included,
lineage added by the runner). The backend only changes who does the fitting: this process
(`local`) or Ray workers (`ray`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlml.bridge.jobs.spec import JobSpec
from sqlml.bridge.manifest import Manifest
from sqlml.errors import TrainingError

Progress = Callable[[float, str], None]
Trained = tuple[Manifest, Path]
# A trainer writes artifacts under the folder it is given and returns (manifest, artifact folder)
# pairs: one for most tasks, one per series for per-series forecasts.
Trainer = Callable[[str, JobSpec, pa.Table, Path, Progress], list[Trained]]


def feature_columns(spec: JobSpec, columns: list[str]) -> list[str]:
    return list(spec.features) if spec.features else [c for c in columns if c != spec.target]


def train_tabular_job(job_id: str, spec: JobSpec, table: pa.Table, folder: Path, progress: Progress) -> list[Trained]:
    """Classification or regression (sqlml.bridge.training.tabular), fit here or by Ray workers."""
    from sqlml.bridge.training.tabular import tabular_task, train_tabular

    fit = None
    if spec.backend == "ray":
        from sqlml.bridge.jobs import ray_backend

        def fit(x: np.ndarray, y: np.ndarray, plan: Any, settings: dict[str, Any], rounds: int) -> Any:
            settings = {**settings, "nthread": 1}  # one thread a worker: the workers are the parallelism
            return ray_backend.fit_xgboost(job_id, x, y, plan, settings, rounds, spec.resources)

    trained = train_tabular(
        table, name=spec.model, target=spec.target, task=tabular_task(spec.task), folder=folder, features=spec.features,
        params=spec.params, progress=progress, fit=fit,
    )  # fmt: skip
    metrics = {**trained.manifest.metrics, "workers": float(spec.resources.workers)}
    return [(trained.manifest.model_copy(update={"metrics": metrics}), folder)]


def train_sentiment(job_id: str, spec: JobSpec, table: pa.Table, folder: Path, progress: Progress) -> list[Trained]:
    """The demo's sentiment recipe (sqlml.bridge.training.sentiment) on the job's rows: the encoder
    loop here or on Ray workers, then the same lexical model, calibration and metrics."""
    from sklearn.model_selection import train_test_split

    from sqlml.bridge.jobs.ddp_sentiment import train_loop
    from sqlml.bridge.runtimes.sentiment import precision_param
    from sqlml.bridge.training.sentiment import ID2LABEL, finish_sentiment, packaged_encoder, sentiment_signature

    text_column = feature_columns(spec, table.column_names)[0]
    table = table.filter(pc.and_(pc.is_valid(table[text_column]), pc.is_valid(table[spec.target])))
    texts = [str(t) for t in table[text_column].to_pylist()]
    labels = np.asarray(table[spec.target].cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    if len(np.unique(labels)) != 2 or not np.isin(labels, (0, 1)).all():
        raise TrainingError(f'the target column "{spec.target}" must hold both classes, as true/false or 1/0')
    params = spec.params
    try:
        serve_precision = precision_param(params, "serve_precision")
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    seed = int(params.get("seed", 0))
    index = np.arange(len(texts))
    rest, test = train_test_split(
        index, test_size=float(params.get("test_size", 0.2)), stratify=labels, random_state=seed
    )
    train, validation = train_test_split(rest, test_size=0.1, stratify=labels[rest], random_state=seed)
    base = str(params.get("base_model") or packaged_encoder())
    serve_max_length = int(params.get("serve_max_length", 256))
    loop_config: dict[str, Any] = {
        "base_model": base,
        "train_texts": [texts[i] for i in train],
        "train_labels": labels[train].tolist(),
        "validation_texts": [texts[i] for i in validation],
        "test_texts": [texts[i] for i in test],
        "test_labels": labels[test].tolist(),
        "epochs": int(params.get("epochs", 1)),
        "batch_size": int(params.get("batch_size", 16)),
        "max_length": int(params.get("max_length", 128)),
        "score_max_length": serve_max_length,
        "learning_rate": float(params.get("learning_rate", 8e-5)),
        "freeze_embeddings": bool(params.get("freeze_embeddings", True)),
        "bf16": bool(params.get("bf16", True)),
        "seed": seed,
        "use_gpu": spec.resources.gpus > 0,
    }
    progress(0.15, f"fine-tuning on {len(train)} texts ({spec.backend}, {spec.resources.workers} worker(s))")
    if spec.backend == "ray":
        from sqlml.bridge.jobs import ray_backend

        result = ray_backend.fit_sentiment(job_id, loop_config, spec.resources, folder)
    else:
        loop_config["output_dir"] = str(folder)
        loop_config["on_step"] = lambda done, total: progress(0.15 + 0.75 * done / total, f"step {done}/{total}")
        result = train_loop(loop_config)
    progress(0.92, "TF-IDF model and calibration on the validation slice")
    extra, metrics = finish_sentiment(
        folder, result,
        ([texts[i] for i in train], labels[train]),
        ([texts[i] for i in validation], labels[validation]),
        ([texts[i] for i in test], labels[test]),
        lexical=bool(params.get("lexical", True)),
    )  # fmt: skip
    metrics.update(
        samples_per_second=float(result["samples_per_second"]),
        train_seconds=float(result["train_seconds"]),
        workers=float(result.get("world_size", 1)),
    )
    manifest = Manifest(
        name=spec.model,
        runtime="sentiment",
        task="sentiment",
        description=f'Sentiment from "{text_column}" (fine-tuned by a sqlml job; class 1 = {spec.target}).',
        signature=sentiment_signature(),
        metrics={k: v for k, v in metrics.items() if not math.isnan(v)},
        lineage={"base_model": base, "labels": ID2LABEL, "text_column": text_column},
        params={**extra, "max_length": serve_max_length, "sub_batch": 64, "precision": serve_precision},
    )
    return [(manifest, folder)]


def train_forecast(job_id: str, spec: JobSpec, table: pa.Table, folder: Path, progress: Progress) -> list[Trained]:
    from sqlml.bridge.jobs.forecast_job import train_forecast_job

    return train_forecast_job(job_id, spec, table, folder, progress)


TRAINERS: dict[str, Trainer] = {
    "classification": train_tabular_job,
    "regression": train_tabular_job,
    "sentiment": train_sentiment,
    "forecast": train_forecast,
}
