"""The one tabular trainer: a user's table in, an XGBoost artifact and its manifest out.

Classification (binary or multiclass; targets boolean, 0/1, integers or text labels) and
regression, on columns of any common SQL type (see `sqlml.bridge.tabular_features`). The same code
serves `ml.train`, `sqlml train`, `POST /v1/jobs` (through `sqlml.bridge.jobs.tasks`, on the local
or the Ray backend) and the demo's `lead_score` (`sqlml.bridge.training.leads`); the caller
publishes what `train_tabular` returns.

The model is fit on a split (stratified for classification) and measured on the held-out rows;
the published version is the one that was measured, so its metrics describe exactly what serves.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlml.bridge.manifest import Column, Manifest, Signature
from sqlml.bridge.tabular_features import PLAN_FILE, Feature, FeaturePlan, TabularTask
from sqlml.bridge.training.common import xgboost_callback
from sqlml.errors import BadRequest, TrainingError, close_names
from sqlml.naming import is_name

MODEL_FILE = "model.json"  # the xgboost runtime's artifact file (sqlml.bridge.runtimes.xgboost_model)
DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 250,
    "max_depth": 3,
    "learning_rate": 0.03,
    "subsample": 0.8,
    "colsample_bytree": 0.5,
    "min_child_weight": 5.0,
    "reg_lambda": 5.0,
}
# XGBoost's own parameters a job may set (anything else is a typo, and an error).
BOOSTER_PARAMS = frozenset(
    {
        "n_estimators", "max_depth", "learning_rate", "eta", "subsample", "colsample_bytree", "colsample_bylevel",
        "min_child_weight", "reg_lambda", "reg_alpha", "lambda", "alpha", "gamma", "max_bin", "max_cat_to_onehot",
        "max_cat_threshold", "tree_method", "grow_policy", "max_leaves", "scale_pos_weight", "nthread",
        "eval_metric", "objective",
    }
)  # fmt: skip
# What the plan and the split read.
PLAN_PARAMS = frozenset({"test_size", "seed", "exclude", "positive_class", "max_categories"})
KNOWN_PARAMS = BOOSTER_PARAMS | PLAN_PARAMS
DEFAULT_MAX_CATEGORIES = 1000
# Text with more distinct values than this share of its rows is free text, not a category.
FREE_TEXT_SHARE = 0.5
# A two-label text target: `probability` is of the label spelled like the event of interest (the
# first of these that is a label, case-insensitively), else of the label that sorts last;
# params positive_class names it outright.
AFFIRMATIVE = ("yes", "y", "true", "t", "1", "positive", "pos", "won", "win", "churn", "bad", "default")
MIN_ROWS = 20

Fit = Callable[[np.ndarray, np.ndarray, "FeaturePlan", dict[str, Any], int], Any]
Progress = Callable[[float, str], None]


@dataclass
class Prepared:
    """A training split, ready for a booster."""

    plan: FeaturePlan
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    rows: int


def tabular_task(task: str) -> TabularTask:
    """A job's task as the trainer names it (lead_scoring is classification)."""
    return "regression" if task == "regression" else "classification"


# -- parameters -------------------------------------------------------------------------------


def check_params(params: dict[str, Any]) -> None:
    """An unknown parameter is an error that names the close known ones."""
    unknown = sorted(set(params) - KNOWN_PARAMS)
    if not unknown:
        return
    close = close_names(unknown[0], sorted(KNOWN_PARAMS))
    raise BadRequest(
        f"unknown training parameter{'s' if len(unknown) > 1 else ''}: {', '.join(map(repr, unknown))}",
        hint=(f"did you mean {', '.join(map(repr, close))}? " if close else "")
        + f"known: {', '.join(sorted(KNOWN_PARAMS))}",
        detail={"unknown": unknown},
    )


def booster_params(task_params: dict[str, Any], plan: FeaturePlan) -> tuple[dict[str, Any], int]:
    """XGBoost's settings for this plan and the number of rounds, over DEFAULT_PARAMS."""
    merged = {**DEFAULT_PARAMS, **{k: v for k, v in task_params.items() if k in BOOSTER_PARAMS}}
    rounds = int(merged.pop("n_estimators"))
    if plan.task == "regression":
        merged.setdefault("objective", "reg:squarederror")
        merged.setdefault("eval_metric", "rmse")
    elif len(plan.classes) > 2:
        merged.setdefault("objective", "multi:softprob")
        merged.setdefault("eval_metric", "mlogloss")
        merged["num_class"] = len(plan.classes)
    else:
        merged.setdefault("objective", "binary:logistic")
        merged.setdefault("eval_metric", "logloss")
    merged.setdefault("seed", int(task_params.get("seed", 7)))
    if plan.has_categories:
        merged.setdefault("max_cat_to_onehot", 4)
    return merged, rounds


# -- the plan: which columns are features, and how each is encoded ----------------------------------


def check_columns(
    types: dict[str, pa.DataType], target: str, features: list[str], task: TabularTask, params: dict[str, Any]
) -> None:
    """What can be refused from the column types alone, before any row is read: unknown
    parameters, feature types no tabular model takes, a regression target that is not a number."""
    check_params(params)
    for name in features:
        if _kind_of(types[name]) is None:
            raise _unusable(name, types[name])
    kind = _kind_of(types[target])
    if task == "regression" and kind != "number":
        raise BadRequest(
            f'regression needs a numeric target; "{target}" is {types[target]}',
            hint="use task 'classification' to predict labels",
        )
    if task == "classification" and kind not in ("number", "boolean", "category"):
        raise BadRequest(f'the target "{target}" has type {types[target]}; classification needs labels')


def _kind_of(kind: pa.DataType) -> str | None:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return "datetime"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "category"
    return None


def _unusable(name: str, kind: pa.DataType) -> BadRequest:
    return BadRequest(
        f'column "{name}" has type {kind}, which a tabular model cannot use',
        hint="cast it to a number, text, boolean or timestamp in the query, or leave it out",
    )


def plan_features(
    table: pa.Table, target: str, features: list[str] | None, task: TabularTask, params: dict[str, Any]
) -> tuple[FeaturePlan, np.ndarray]:
    """The feature plan and the encoded target (float labels: class indexes, or values)."""
    check_params(params)
    if target not in table.column_names:
        raise BadRequest(f'the training rows have no target column "{target}"')
    exclude = params.get("exclude") or []
    if isinstance(exclude, str):
        exclude = [exclude]
    missing = [c for c in [*(features or []), *exclude] if c not in table.column_names]
    if missing:
        raise BadRequest(f"no column {', '.join(map(repr, missing))} in the training rows",
                         hint=f"columns: {', '.join(table.column_names)}")  # fmt: skip
    if features and (target in features or len(set(features)) != len(features)):
        raise BadRequest(
            "features must name distinct columns other than the target",
            hint=f'the model predicts "{target}"; it cannot also read it',
            detail={"features": features, "target": target},
        )
    table = table.filter(_has_value(table.column(target)))
    if table.num_rows < MIN_ROWS:
        raise TrainingError(f'{table.num_rows} rows have a value of "{target}"; training needs at least {MIN_ROWS}')
    chosen = list(features) if features else [c for c in table.column_names if c != target and c not in exclude]
    dropped: dict[str, str] = {c: "excluded (params.exclude)" for c in exclude}
    planned = []
    for name in chosen:
        feature = _feature(table.column(name), name, params, explicit=features is not None)
        if isinstance(feature, str):
            dropped[name] = feature
        else:
            planned.append(feature)
    if not planned:
        raise BadRequest("no feature columns are left besides the target", detail={"dropped": dropped})
    classes, positive, labels = _encode_target(table.column(target), target, task, params)
    plan = FeaturePlan(tuple(planned), task, classes, positive, target, dropped)
    return plan, labels


def _has_value(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Rows whose target is neither NULL nor NaN (NaN is how pandas spells a missing number)."""
    valid = pc.is_valid(column)
    if pa.types.is_floating(column.type):
        valid = pc.and_(valid, pc.invert(pc.is_nan(column)))
    return valid


# An id column by its name: `id`, `customer_id`, `order_key`, `uuid`, `rownames`.
ID_NAME = re.compile(r"(?:^|_)(?:id|key|uuid|guid|rownames)\Z")


def _feature(column: pa.ChunkedArray, name: str, params: dict[str, Any], explicit: bool) -> Feature | str:
    """The feature for a column, or (only for a column the caller did not name) why it is left out."""
    kind = column.type
    if not is_name(name):
        raise BadRequest(f"feature column {name!r} is not a plain name", hint="alias it in the query: AS some_name")
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_boolean(kind):
        return Feature(name, "boolean")
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        if not explicit and pa.types.is_integer(kind) and _looks_like_an_id(column, name):
            return "unique per row (an id); name it in features to use it"
        if pa.types.is_floating(kind) and pc.any(pc.is_inf(column)).as_py():
            raise BadRequest(f'column "{name}" holds infinite values', hint="replace them (NULL is a missing value)")
        return Feature(name, "number", integer=pa.types.is_integer(kind))
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return Feature(name, "datetime")
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if not explicit and _looks_like_an_id(column, name):
            return "unique per row (an id); name it in features to use it"
        values = pc.unique(column.drop_null())
        limit = int(params.get("max_categories", DEFAULT_MAX_CATEGORIES))
        present = len(column) - column.null_count
        # the share rule guesses; a column the caller named, or a limit the caller set, overrides it
        guessing = not explicit and "max_categories" not in params
        if len(values) > limit or (guessing and len(values) > 50 and len(values) > FREE_TEXT_SHARE * present):
            raise BadRequest(
                f'column "{name}" holds {len(values)} distinct texts in {present} rows: too free-form to be a category',
                hint=f'leave it out (params exclude: ["{name}"]) or score the text with a text model '
                "(task 'sentiment'); for a real category column, name it in features or raise params "
                f"max_categories (now {limit})",
                detail={"column": name, "distinct": len(values), "rows": present},
            )
        return Feature(name, "category", tuple(sorted(str(v) for v in values.to_pylist())))
    raise _unusable(name, kind)


def _looks_like_an_id(column: pa.ChunkedArray, name: str) -> bool:
    """Unique per row, and named like an id or (integers) consecutive: a measurement that happens
    to differ on every row (an income in whole units) stays a feature."""
    if len(column) < MIN_ROWS or column.null_count or len(pc.unique(column)) != len(column):
        return False
    if ID_NAME.search(name.lower()):
        return True
    if pa.types.is_integer(column.type):
        low, high = pc.min_max(column).values()
        return bool(high.as_py() - low.as_py() + 1 == len(column))
    return False


def _encode_target(
    column: pa.ChunkedArray, target: str, task: TabularTask, params: dict[str, Any]
) -> tuple[tuple[str, ...], str | None, np.ndarray]:
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    is_number = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    if task == "regression":
        if not is_number:
            raise BadRequest(
                f'regression needs a numeric target; "{target}" is {kind}',
                hint="use task 'classification' to predict labels",
            )
        values = np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False))
        if not np.all(np.isfinite(values)):
            raise BadRequest(f'the target "{target}" holds infinite values', hint="filter or replace them")
        return (), None, values
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False))
        if not np.all(values == np.round(values)):
            raise BadRequest(
                f'classification needs labels; "{target}" holds fractional numbers',
                hint="use task 'regression' to predict a number",
            )
        column = column.cast(pa.int64())
        kind = pa.int64()
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind):
        values = np.asarray(column.cast(pa.int64()).to_numpy(zero_copy_only=False))
        distinct = np.unique(values)
        if pa.types.is_boolean(kind) or set(distinct.tolist()) <= {0, 1}:
            _need_two(len(distinct), target, distinct)
            return ("false", "true"), None, values.astype(np.float64)
        labels = [str(v) for v in distinct.tolist()]
        _need_two(len(labels), target, labels)
        _not_one_class_a_row(len(labels), len(values), target)
        index = {v: i for i, v in enumerate(distinct.tolist())}
        positive = labels[1] if len(labels) == 2 else None  # {1, 2}: the label, and the probability of 2
        return tuple(labels), positive, np.asarray([index[v] for v in values.tolist()], dtype=np.float64)
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise BadRequest(
            f'the target "{target}" has type {kind}; classification needs labels (text, integers, booleans)'
        )
    texts = [str(v) for v in column.to_pylist()]
    classes = sorted(set(texts))
    _need_two(len(classes), target, classes)
    _not_one_class_a_row(len(classes), len(texts), target)
    positive = None
    if len(classes) == 2:
        positive = _positive_class(classes, params.get("positive_class"), target)
        classes = [c for c in classes if c != positive] + [positive]  # the booster's class 1 is the positive one
    index = {c: i for i, c in enumerate(classes)}
    return tuple(classes), positive, np.asarray([index[t] for t in texts], dtype=np.float64)


MAX_CLASSES = 200


def _not_one_class_a_row(classes: int, rows: int, target: str) -> None:
    if classes > MAX_CLASSES or classes > rows / 2:
        raise BadRequest(
            f'the target "{target}" has {classes} classes in {rows} rows: that is a value per row, not a label',
            hint=f"use task 'regression' for a number; a classifier takes at most {MAX_CLASSES} classes",
        )


def _need_two(count: int, target: str, seen: Any) -> None:
    if count < 2:
        only = next(iter(seen)) if count else None
        raise TrainingError(
            f'the target "{target}" has a single class ({only!r}): a classifier needs at least two',
            hint="check the query's filter, or train on rows with every outcome",
        )


def _positive_class(classes: list[str], given: Any, target: str) -> str:
    if given is not None:
        if str(given) not in classes:
            raise BadRequest(f'positive_class {given!r} is not a value of "{target}" ({", ".join(classes)})')
        return str(given)
    for word in AFFIRMATIVE:
        for label in classes:
            if label.strip().lower() == word:
                return label
    return classes[1]


# -- outputs ------------------------------------------------------------------------------------


def output_columns(plan: FeaturePlan) -> list[Column]:
    """binary: probability (of true, or of the positive label, with the label for a text target);
    multiclass: label, its probability and one probability column per class; regression: value."""
    target = plan.target
    if plan.task == "regression":
        return [Column(name="value", type="double", description=f"predicted {target}")]
    if len(plan.classes) == 2 and plan.positive is None:
        return [Column(name="probability", type="double", description=f"probability that {target} is true")]
    outputs = [
        Column(name="label", type="text", description=f"predicted {target}"),
        Column(name="probability", type="double", description=(
            f"probability that {target} is {plan.positive!r}" if plan.positive else "probability of the label")),
    ]  # fmt: skip
    if len(plan.classes) > 2:
        outputs += [
            Column(name=name, type="double", description=f"probability of {label!r}")
            for label, name in class_columns(plan.classes).items()
        ]
    return outputs


def class_columns(classes: tuple[str, ...]) -> dict[str, str]:
    """`p_<class>` output names for a multiclass model; empty when the labels do not make distinct names."""
    names = {label: "p_" + re.sub(r"[^a-z0-9_]+", "_", label.strip().lower()).strip("_") for label in classes}
    if len(set(names.values())) != len(names) or not all(is_name(n) for n in names.values()):
        return {}
    reserved = {"label", "probability"}
    return {} if reserved & set(names.values()) else names


# -- preparing, fitting, measuring, packaging ---------------------------------------------------------


def prepare(
    table: pa.Table, target: str, features: list[str] | None, task: TabularTask, params: dict[str, Any]
) -> Prepared:
    from sklearn.model_selection import train_test_split

    plan, labels = plan_features(table, target, features, task, params)
    table = table.filter(_has_value(table.column(target)))
    matrix, _ = plan.matrix(table)
    stratify = labels if task == "classification" else None
    if stratify is not None and np.min(np.unique(labels, return_counts=True)[1]) < 2:
        stratify = None  # a class with one row cannot be split both ways
    x_train, x_test, y_train, y_test = train_test_split(
        matrix, labels, test_size=float(params.get("test_size", 0.2)), stratify=stratify,
        random_state=int(params.get("seed", 7)),
    )  # fmt: skip
    return Prepared(plan, x_train, y_train, x_test, y_test, table.num_rows)


def dmatrix(x: np.ndarray, plan: FeaturePlan, label: np.ndarray | None = None) -> Any:
    import xgboost as xgb

    return xgb.DMatrix(
        x, label=label, feature_names=plan.matrix_names, feature_types=plan.matrix_types,
        enable_categorical=plan.has_categories,
    )  # fmt: skip


def fit_local(
    x: np.ndarray, y: np.ndarray, plan: FeaturePlan, settings: dict[str, Any], rounds: int,
    on_round: Callable[[int, int], None] | None = None,
) -> Any:  # fmt: skip
    import xgboost as xgb  # here: the bridge imports this module's neighbours to serve, not only to train

    settings = {k: v for k, v in settings.items() if v is not None}
    callbacks = [_round_callback(rounds, on_round)] if on_round else None
    return xgb.train(settings, dmatrix(x, plan, y), num_boost_round=rounds, callbacks=callbacks)


def evaluate(booster: Any, data: Prepared) -> dict[str, float]:
    """Held-out metrics for the plan's task, each next to its honest baseline."""
    predictions = booster.predict(dmatrix(data.x_test, data.plan))
    metrics = metrics_for(data.plan, data.y_test, np.asarray(predictions), data.y_train)
    if "base_rate" in metrics:  # of every labelled row, as the data describes it
        metrics["base_rate"] = float(np.mean(np.concatenate([data.y_train, data.y_test])))
    return {**metrics, "train_rows": float(len(data.y_train)), "test_rows": float(len(data.y_test))}


def metrics_for(
    plan: FeaturePlan, truth: np.ndarray, predicted: np.ndarray, train_truth: np.ndarray
) -> dict[str, float]:
    """classification: AUC, log loss, accuracy, precision/recall/F1 (binary) or macro F1; regression:
    RMSE, MAE, R² and the RMSE of predicting the training mean (the baseline to beat)."""
    from sklearn import metrics as m

    if plan.task == "regression":
        baseline = np.full_like(truth, float(np.mean(train_truth)))
        return {
            "rmse": float(math.sqrt(m.mean_squared_error(truth, predicted))),
            "mae": float(m.mean_absolute_error(truth, predicted)),
            "r2": float(m.r2_score(truth, predicted)),
            "baseline_rmse": float(math.sqrt(m.mean_squared_error(truth, baseline))),
        }
    classes = list(range(len(plan.classes)))
    if len(plan.classes) > 2:
        probabilities = predicted.reshape(len(truth), len(classes))
        chosen = probabilities.argmax(axis=1)
        out = {
            "accuracy": float(m.accuracy_score(truth, chosen)),
            "logloss": float(m.log_loss(truth, probabilities, labels=classes)),
            "f1_macro": float(m.f1_score(truth, chosen, average="macro", labels=classes, zero_division=0)),
            "baseline_accuracy": float(np.mean(truth == np.bincount(train_truth.astype(int)).argmax())),
        }
        if len(np.unique(truth)) == len(classes):
            out["auc"] = float(m.roc_auc_score(truth, probabilities, multi_class="ovr", labels=classes))
        return out
    chosen = (predicted >= 0.5).astype(float)
    out = {
        "logloss": float(m.log_loss(truth, predicted, labels=[0.0, 1.0])),
        "accuracy": float(m.accuracy_score(truth, chosen)),
        "precision": float(m.precision_score(truth, chosen, zero_division=0)),
        "recall": float(m.recall_score(truth, chosen, zero_division=0)),
        "f1": float(m.f1_score(truth, chosen, zero_division=0)),
        "base_rate": float(np.mean(train_truth)),
    }
    if len(np.unique(truth)) == 2:
        out["auc"] = float(m.roc_auc_score(truth, predicted))
    return out


def package(
    booster: Any, data: Prepared, folder: Path, *, name: str, params: dict[str, Any], description: str = ""
) -> Manifest:
    """Write the artifact (booster and plan) into `folder`; returns the manifest to publish with it."""
    plan = data.plan
    booster.save_model(str(folder / MODEL_FILE))
    (folder / PLAN_FILE).write_text(plan.to_json())
    settings, rounds = booster_params(params, plan)
    what = {"regression": "Predicted", "classification": "Class of"}[plan.task]
    return Manifest(
        name=name,
        runtime="xgboost",
        task=plan.task,
        description=description or f'{what} "{plan.target}" (XGBoost, trained by sqlml).',
        signature=Signature(inputs=plan.signature_inputs(), outputs=output_columns(plan)),
        params={"n_estimators": rounds, **settings},
        lineage={"target": plan.target, "classes": list(plan.classes), "dropped": plan.dropped},
    )


@dataclass
class TrainedTabular:
    manifest: Manifest
    booster: Any
    data: Prepared


def train_tabular(
    table: pa.Table,
    *,
    name: str,
    target: str,
    task: TabularTask,
    folder: Path,
    features: list[str] | None = None,
    params: dict[str, Any] | None = None,
    progress: Progress | None = None,
    fit: Fit | None = None,
    description: str = "",
) -> TrainedTabular:
    """Plan, split, fit (this process, or `fit` — the Ray backend's), measure and package into
    `folder`. The manifest carries the held-out metrics; the caller publishes it."""
    params = dict(params or {})
    report = progress or (lambda fraction, message: None)
    data = prepare(table, target, features, task, params)
    plan = data.plan
    settings, rounds = booster_params(params, plan)
    dropped = f"; left out: {', '.join(f'{c} ({why})' for c, why in plan.dropped.items())}" if plan.dropped else ""
    report(0.2, f"fitting {len(data.y_train)} rows x {len(plan.features)} features{dropped}")
    if fit is not None:
        booster = fit(data.x_train, data.y_train, plan, settings, rounds)
    else:
        settings.setdefault("nthread", int(params.get("nthread", 0)) or None)
        booster = fit_local(
            data.x_train, data.y_train, plan, settings, rounds,
            on_round=lambda done, total: report(0.2 + 0.7 * done / total, f"round {done}/{total}"),
        )  # fmt: skip
    report(0.92, "measuring on the held-out rows")
    metrics = evaluate(booster, data)
    manifest = package(booster, data, folder, name=name, params=params, description=description)
    manifest = manifest.model_copy(update={"metrics": metrics})
    return TrainedTabular(manifest, booster, data)


def _round_callback(total: int, on_round: Callable[[int, int], None]) -> Any:
    """Calls `on_round(done, total)` every few boosting rounds (every round would flood the job store)."""
    every = max(1, total // 20)

    def after_round(done: int) -> None:
        if done % every == 0 or done == total:
            on_round(done, total)

    return xgboost_callback(after_round)
