"""`evaluate`: a model version's metrics on rows it has not seen (BigQuery's ML.EVALUATE).

The rows carry the model's inputs and its target column (the one it was trained on, recorded in
its feature plan); each row is scored exactly as `predict` scores it (same validation, NULLs as
missing) and compared with its target. Classification reports AUC, log loss, accuracy,
precision/recall/F1 (binary) or macro F1, and the confusion matrix; regression RMSE, MAE and R².
Rows whose target is NULL are left out and counted. Forecast models are measured on what happened
after their history (`forecast_evaluation.py`: pinball loss, p10–p90 coverage, MAE against the
seasonal naive). Otherwise tabular (XGBoost) models trained by sqlml only: other models answer
`not_supported`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlml.bridge.host import LoadedModel, ModelHost
from sqlml.bridge.tabular_features import FeaturePlan, numeric_plan
from sqlml.errors import InvalidInput, NotSupported


def target_of(loaded: LoadedModel) -> tuple[FeaturePlan, str]:
    """The plan and target column an evaluation compares with, or NotSupported."""
    manifest = loaded.manifest
    runtime = loaded.runtime
    if manifest.runtime != "xgboost" or manifest.task not in ("classification", "regression"):
        raise NotSupported(
            f'model "{manifest.name}" ({manifest.task}) cannot be evaluated here',
            hint="evaluate works on classification and regression models",
        )
    if not hasattr(runtime, "scores"):
        raise NotSupported(
            f'model "{manifest.name}" is served from a model process (--model-processes), where evaluate does not run',
            hint="serve xgboost models in the bridge's own process to evaluate them",
        )
    plan = getattr(runtime, "plan", None)
    if plan is None:  # a version from before feature plans: numeric inputs, a boolean target
        signature = manifest.signature
        plan = numeric_plan(signature.input_names(), [c.type for c in signature.inputs], manifest.task)
        plan = FeaturePlan(plan.features, plan.task, ("false", "true"), target=str(manifest.lineage.get("target", "")))
    if not plan.target:
        raise NotSupported(f'model "{manifest.name}" does not record its target column; retrain it to evaluate')
    return plan, plan.target


def evaluate(host: ModelHost, loaded: LoadedModel, table: pa.Table) -> dict[str, Any]:
    """Metrics of `loaded` on `table` (inputs and the target column)."""
    from sqlml.bridge.training.tabular import metrics_for  # sklearn: imported by this call only

    if loaded.manifest.task == "forecast":
        from sqlml.bridge.forecast_evaluation import evaluate_forecast  # pandas: imported by this call only

        return evaluate_forecast(host, loaded, table)
    plan, target = target_of(loaded)
    if target not in table.column_names:
        raise InvalidInput(
            f'the rows have no target column "{target}" to compare with',
            hint=f"select the inputs and {target}",
            detail={"target": target},
        )
    labelled = table.filter(pc.is_valid(table.column(target)))
    skipped = table.num_rows - labelled.num_rows
    if labelled.num_rows == 0:
        raise InvalidInput(f'no row has a value of "{target}"')
    truth = _truth(labelled.column(target), plan)
    inputs = host.validate(loaded, labelled.drop_columns([target]))
    scores = np.asarray(loaded.runtime.scores(inputs), dtype=np.float64)  # type: ignore[attr-defined]
    predicted = scores[:, 0] if scores.shape[1] == 1 else scores
    metrics = metrics_for(plan, truth, predicted, truth)  # baselines: of the evaluated rows themselves
    result: dict[str, Any] = {
        "model": loaded.manifest.name,
        "version": loaded.manifest.version,
        "rows": labelled.num_rows,
        "skipped_rows": skipped,
        "metrics": metrics,
    }
    if plan.task == "classification":
        chosen = (predicted >= 0.5).astype(int) if predicted.ndim == 1 else predicted.argmax(axis=1)
        size = len(plan.classes)
        counts = np.zeros((size, size), dtype=int)
        np.add.at(counts, (truth.astype(int), chosen), 1)
        result["confusion_matrix"] = {"labels": list(plan.classes), "counts": counts.tolist()}
    return result


def _truth(column: pa.ChunkedArray, plan: FeaturePlan) -> np.ndarray:
    """The target as the booster's labels: class indexes, or values for regression."""
    if plan.task == "regression":
        try:
            return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise InvalidInput(f'the target "{plan.target}" must be numbers for a regression model') from None
    index = {label: i for i, label in enumerate(plan.classes)}
    boolean = plan.classes == ("false", "true")
    labels = [_label(v, boolean) for v in column.to_pylist()]
    unknown = sorted({label for label in labels if label not in index})
    if unknown:
        raise InvalidInput(
            f"target values the model does not know: {', '.join(map(repr, unknown[:5]))}",
            hint=f"its classes: {', '.join(plan.classes)}",
            detail={"unknown": unknown[:20], "classes": list(plan.classes)},
        )
    return np.asarray([index[label] for label in labels], dtype=np.float64)


def _label(value: Any, boolean: bool) -> str:
    """A target value as the model's class label: a boolean target's classes are false/true (also
    written 0/1); integer labels are their digits."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if boolean and (isinstance(value, bool) or value in (0, 1)):
        return "true" if value else "false"
    if boolean and isinstance(value, str) and value.lower() in ("true", "false", "t", "f"):
        return "true" if value.lower() in ("true", "t") else "false"
    return str(value)
