"""Lead scoring (binary classification with XGBoost) for training jobs: data, fit, measure, package.

The local and the Ray backends share everything here but the fit itself: `prepare()` turns the
Arrow rows into a float32 matrix and a 0/1 label with a stratified split, `fit_local()` boosts
in-process, `evaluate()` measures on the held-out rows, and `package()` writes the artifact the
`xgboost` runtime serves (same files as `sqlml.bridge.training.leads`) and its manifest, whose
signature keeps each feature's SQL type.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlml.bridge.manifest import Column, ColumnType, Manifest, Signature
from sqlml.bridge.training.common import xgboost_callback
from sqlml.bridge.training.leads import DEFAULT_PARAMS
from sqlml.errors import BadRequest, TrainingError

FEATURE_NAMES_FILE = "feature_names.json"
SPLIT_PARAMS = ("test_size", "seed")


@dataclass
class TabularData:
    features: list[str]
    types: list[ColumnType]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    base_rate: float


def numeric_sql_type(arrow_type: pa.DataType) -> ColumnType | None:
    """The signature type of a feature column, or None when XGBoost cannot take it."""
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        return "bigint"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "double"
    return None


def check_columns(columns: dict[str, pa.DataType], target: str, features: list[str]) -> None:
    """Raise a BadRequest naming every feature that is not numeric or boolean."""
    bad = [f"{name} ({columns[name]})" for name in features if numeric_sql_type(columns[name]) is None]
    if bad:
        raise BadRequest(
            f"lead scoring needs numeric or boolean features; not: {', '.join(bad)}",
            hint="cast them in the query or leave them out with features=[...]",
        )
    if numeric_sql_type(columns[target]) is None:
        raise BadRequest(f'the target column "{target}" must be boolean or 0/1, not {columns[target]}')


def prepare(table: pa.Table, target: str, features: list[str], params: dict[str, Any]) -> TabularData:
    from sklearn.model_selection import train_test_split

    table = table.filter(pc.is_valid(table.column(target)))
    labels = table.column(target).to_numpy(zero_copy_only=False).astype(np.float64)
    if not np.isin(labels, (0.0, 1.0)).all():
        raise TrainingError(f'the target column "{target}" holds values other than 0/1 (true/false)')
    if labels.min() == labels.max():
        raise TrainingError(f'the target column "{target}" needs both classes; every row is {int(labels[0])}')
    matrix = np.empty((table.num_rows, len(features)), dtype=np.float32)
    for position, name in enumerate(features):
        # NULL features become NaN, which XGBoost treats as missing
        column = table.column(name).cast(pa.float64())
        matrix[:, position] = column.to_numpy(zero_copy_only=False)
    types = [numeric_sql_type(table.schema.field(f).type) or "double" for f in features]
    x_train, x_test, y_train, y_test = train_test_split(
        matrix,
        labels,
        test_size=float(params.get("test_size", 0.2)),
        stratify=labels,
        random_state=int(params.get("seed", 7)),
    )
    return TabularData(features, types, x_train, y_train, x_test, y_test, float(labels.mean()))


def booster_params(params: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """XGBoost parameters and the number of rounds from a job's params over the lead defaults."""
    merged = {**DEFAULT_PARAMS, **{k: v for k, v in params.items() if k not in SPLIT_PARAMS}}
    rounds = int(merged.pop("n_estimators"))
    merged.setdefault("objective", "binary:logistic")
    merged.setdefault("eval_metric", "logloss")
    merged.setdefault("seed", int(params.get("seed", 7)))
    merged.setdefault("nthread", 1)  # one thread a worker: the workers are the parallelism
    return merged, rounds


def fit_local(data: TabularData, params: dict[str, Any], on_round: Callable[[int, int], None] | None = None) -> Any:
    import xgboost as xgb  # here, not at the top: the bridge imports this module to serve, not only to train

    settings, rounds = booster_params(params)
    settings["nthread"] = int(params.get("nthread", 0)) or None
    settings = {k: v for k, v in settings.items() if v is not None}
    dtrain = xgb.DMatrix(data.x_train, label=data.y_train, feature_names=data.features)
    callbacks = [_round_callback(rounds, on_round)] if on_round else None
    return xgb.train(settings, dtrain, num_boost_round=rounds, callbacks=callbacks)


def evaluate(booster: Any, data: TabularData) -> dict[str, float]:
    from sklearn.metrics import log_loss, roc_auc_score

    probabilities = booster.inplace_predict(data.x_test, validate_features=False)
    return {
        "auc": float(roc_auc_score(data.y_test, probabilities)),
        "logloss": float(log_loss(data.y_test, probabilities, labels=[0.0, 1.0])),
        "base_rate": data.base_rate,
        "train_rows": float(len(data.y_train)),
        "test_rows": float(len(data.y_test)),
    }


def package(
    booster: Any, data: TabularData, folder: Path, *, name: str, target: str, params: dict[str, Any]
) -> Manifest:
    """Write the artifact into `folder`; returns the manifest to publish with it."""
    from sqlml.bridge.runtimes.xgboost_model import MODEL_FILE  # imports xgboost, which serving need not

    booster.save_model(str(folder / MODEL_FILE))
    (folder / FEATURE_NAMES_FILE).write_text(json.dumps(data.features))
    settings, rounds = booster_params(params)
    return Manifest(
        name=name,
        runtime="xgboost",
        task="classification",
        description=f'Probability that "{target}" is true (XGBoost, trained by a sqlml job).',
        signature=Signature(
            inputs=[Column(name=f, type=t) for f, t in zip(data.features, data.types, strict=True)],
            outputs=[Column(name="probability", type="double", description=f"probability that {target} is true")],
        ),
        params={"n_estimators": rounds, **settings},
    )


def _round_callback(total: int, on_round: Callable[[int, int], None]) -> Any:
    """Calls `on_round(done, total)` every few boosting rounds (every round would flood the job store)."""
    every = max(1, total // 20)

    def after_round(done: int) -> None:
        if done % every == 0 or done == total:
            on_round(done, total)

    return xgboost_callback(after_round)
