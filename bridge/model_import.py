"""Models trained elsewhere, published as versions like any other (`sqlml models import`,
`POST /v1/models/{name}/import`).

Three kinds, told apart by the path when not named: an XGBoost model file (`.json`, `.ubj`), a
scikit-learn estimator or `Pipeline` saved with joblib or pickle (`.joblib`, `.pkl`), and a
transformers text-classification folder (`save_pretrained`, with `config.json` and safetensors
weights). Each becomes the artifact of an existing runtime:

| kind | runtime | artifact | signature inferred from |
| --- | --- | --- | --- |
| xgboost | `xgboost` | `model.json`, `features.json` (numeric plan) | `feature_names`, `feature_types`, objective |
| sklearn | `sklearn` | `model.joblib` | `feature_names_in_`, encoder categories, `classes_` |
| transformers | `text_classifier` | the folder | `config.id2label` |

A signature given (`inputs`, `outputs`) overrides the inferred one column for column: it may
rename and retype the inputs, and rename the outputs, but must have as many columns as the model
has features and outputs. Before anything is published, the runtime loads the artifact and scores
one row of the signature, so a version that cannot serve is never stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

import pyarrow as pa

from sqlml.bridge.manifest import Column, ColumnType, Manifest, Signature, check_alias, check_name
from sqlml.bridge.registry import Registry
from sqlml.bridge.runtimes import runtime_class
from sqlml.bridge.signature import arrow_type
from sqlml.bridge.tabular_features import PLAN_FILE, Feature, FeaturePlan
from sqlml.bridge.training.tabular import class_columns, output_columns
from sqlml.errors import BadRequest, InvalidInput, SqlmlError, library_error_text
from sqlml.naming import is_name

KINDS = ("xgboost", "sklearn", "transformers")
TASKS = ("classification", "regression", "text_classification")
XGBOOST_SUFFIXES = (".json", ".ubj")
SKLEARN_SUFFIXES = (".joblib", ".pkl", ".pickle")
PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")  # never copied from a folder
COLUMN_TYPES: tuple[str, ...] = get_args(ColumnType)
TYPE_SYNONYMS = {
    "float8": "double",
    "double precision": "double",
    "float": "double",
    "real": "double",
    "int": "bigint",
    "integer": "bigint",
    "int8": "bigint",
    "bool": "boolean",
    "varchar": "text",
    "string": "text",
}
XGBOOST_TYPES: dict[str | None, ColumnType] = {"int": "bigint", "i": "boolean"}  # any other: double
MAX_TEXT_LENGTH = 256
KIND_HINT = "pass --kind xgboost (a .json or .ubj model), sklearn (.joblib, .pkl) or transformers (a folder)"


@dataclass(frozen=True)
class ImportOptions:
    """What the caller says about the model; everything else is inferred."""

    kind: str | None = None
    inputs: list[Column] | None = None
    outputs: list[Column] | None = None
    task: str | None = None
    labels: list[str] | None = None  # class labels in the model's order (XGBoost, or to rename id2label)
    target: str = ""  # the column the model predicts (recorded; lets ml.evaluate score an XGBoost import)
    description: str = ""
    source: str = ""  # the file name the model came from, for the lineage


@dataclass
class Prepared:
    """An artifact folder ready to publish, with its manifest, and sample values for a test row."""

    manifest: Manifest
    samples: dict[str, Any] = field(default_factory=dict)


# -- what the caller passes ------------------------------------------------------------------------


def parse_columns(text: str, what: str) -> list[Column]:
    """`'a double, b text'` as columns (SQL synonyms such as `integer` and `float8` accepted)."""
    columns: list[Column] = []
    for part in text.split(","):
        words = part.split()
        if len(words) < 2:
            raise BadRequest(
                f"{what}: {part.strip()!r} needs a name and a type",
                hint=f"write 'name type, ...' with types {', '.join(COLUMN_TYPES)}",
            )
        name, kind = words[0], " ".join(words[1:]).lower()
        kind = TYPE_SYNONYMS.get(kind, kind)
        if kind not in COLUMN_TYPES:
            raise BadRequest(
                f"{what}: column {name!r} has the unknown type {kind!r}", hint=f"use {', '.join(COLUMN_TYPES)}"
            )
        check_name(name, f"{what} column name")
        columns.append(Column(name=name, type=kind))  # type: ignore[arg-type]
    _no_duplicates([c.name for c in columns], what)
    return columns


def parse_labels(text: str) -> list[str]:
    labels = [label.strip() for label in text.split(",")]
    if not all(labels):
        raise BadRequest(f"labels: empty label in {text!r}", hint="write 'no,yes' in the model's class order")
    _no_duplicates(labels, "labels")
    return labels


def _no_duplicates(names: list[str], what: str) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BadRequest(f"{what}: {', '.join(twice)} named twice")


def sql_name(text: str) -> str:
    """A feature name as a SQL identifier: `Sepal Length (cm)` -> `sepal_length_cm`."""
    name = re.sub(r"[^a-z0-9_]+", "_", str(text).strip().lower()).strip("_")
    name = name if name[:1].isalpha() else f"f_{name}"
    return name[:63]


def detect_kind(path: Path) -> str:
    if path.is_dir():
        if (path / "config.json").is_file():
            return "transformers"
        raise BadRequest(f'the folder "{path.name}" has no config.json, so it is no transformers model', hint=KIND_HINT)
    suffix = path.suffix.lower()
    if suffix in XGBOOST_SUFFIXES:
        return "xgboost"
    if suffix in SKLEARN_SUFFIXES:
        return "sklearn"
    raise BadRequest(f'cannot tell what kind of model "{path.name}" is', hint=KIND_HINT)


def check_kind(kind: str | None, path: Path) -> str:
    """The kind named (checked), else the one the path shows."""
    if kind is None:
        return detect_kind(path)
    if kind not in KINDS:
        raise BadRequest(f"unknown model kind {kind!r}", hint=KIND_HINT)
    return kind


# -- the whole import ------------------------------------------------------------------------------


def import_model(
    registry: Registry, name: str, source: Path, options: ImportOptions, alias: str | None = None
) -> Manifest:
    """Check, convert, test-score and publish `source` as the next version of `name`."""
    check_name(name)
    if alias:
        check_alias(alias)
    kind = check_kind(options.kind, source)
    with tempfile.TemporaryDirectory(prefix="sqlml-import-") as scratch:
        folder = Path(scratch) / "artifact"
        folder.mkdir()
        prepared = prepare(name, source, kind, options, folder)
        check_scores(prepared, folder)
        return registry.publish(prepared.manifest, folder, alias)


def prepare(name: str, source: Path, kind: str, options: ImportOptions, folder: Path) -> Prepared:
    """Write the artifact of `source` into `folder`; returns its manifest."""
    if options.task is not None and options.task not in TASKS:
        raise BadRequest(f"unknown task {options.task!r}", hint=f"use {', '.join(TASKS)}")
    build = {"xgboost": _xgboost, "sklearn": _sklearn, "transformers": _transformers}[kind]
    prepared = build(name, source, options, folder)
    lineage = prepared.manifest.lineage
    lineage["imported"] = {
        "kind": kind,
        "file": options.source or source.name,
        "sha256": _digest(source),
        **lineage.get("imported", {}),
    }
    if options.target:
        lineage["target"] = options.target
    return prepared


def check_scores(prepared: Prepared, folder: Path) -> None:
    """Load the artifact with its runtime and score one row, as the bridge will."""
    manifest = prepared.manifest
    inputs = manifest.signature.inputs
    runtime = runtime_class(manifest.runtime)(manifest, folder)
    try:
        row = pa.table({c.name: pa.array([_sample(c, prepared.samples)], arrow_type(c.type)) for c in inputs})
        runtime.load()
        scored = runtime.predict(row)
    except SqlmlError as error:
        raise InvalidInput(
            f'model "{manifest.name}" cannot serve as imported: {error.message}', hint=error.hint
        ) from None
    except Exception as exc:
        shape = ", ".join(f"{c.name} {c.type}" for c in inputs)
        raise InvalidInput(
            f'model "{manifest.name}" fails to score a row of ({shape}): {library_error_text(exc)}',
            hint="pass --inputs with the names and types the model was trained on",
        ) from None
    finally:
        runtime.unload()
    if scored.num_rows != 1 or scored.column_names != manifest.signature.output_names():
        raise InvalidInput(f'model "{manifest.name}" answered {scored.column_names} for one row, not its outputs')


def _sample(column: Column, samples: dict[str, Any]) -> Any:
    """A value for the test row: one the model knows (a category) where the importer found one."""
    if column.type == "text":
        return str(samples.get(column.name, "a"))
    return {"double": 0.0, "bigint": 0, "boolean": False, "timestamp": datetime(2000, 1, 1)}[column.type]


def _digest(path: Path) -> str:
    """The SHA-256 of a file, or of a folder's files in name order (their names included)."""
    if path.is_file():
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + _digest(file).encode())
    return digest.hexdigest()


# -- signatures ------------------------------------------------------------------------------------


def _inputs(inferred: list[Column] | None, given: list[Column] | None, width: int | None, what: str) -> list[Column]:
    """The given inputs checked against the model's width, else the inferred ones."""
    if given is not None:
        if width is not None and len(given) != width:
            raise InvalidInput(
                f"the model takes {width} features, the inputs given name {len(given)}",
                hint=f"pass --inputs with {width} columns, in the model's feature order",
                detail={"features": width, "inputs": len(given)},
            )
        return given
    if inferred is None:
        raise BadRequest(
            f"{what}, so its inputs cannot be inferred",
            hint=f"pass --inputs 'name type, ...' with {width if width is not None else 'one column a'} feature"
            f"{'' if width == 1 else 's'} in the model's order",
        )
    names = [c.name for c in inferred]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BadRequest(
            f"the model's feature names become {', '.join(twice)} twice as SQL names", hint="pass --inputs"
        )
    return inferred


def _outputs(inferred: list[Column], given: list[Column] | None) -> list[Column]:
    """The inferred outputs, renamed by the given ones (same count and types)."""
    if given is None:
        return inferred
    shape = ", ".join(f"{c.name} {c.type}" for c in inferred)
    if [c.type for c in given] != [c.type for c in inferred]:
        raise InvalidInput(
            f"the model answers ({shape}); the outputs given have other columns",
            hint="give as many outputs as that, with the same types, to rename them",
        )
    return [c.model_copy(update={"name": g.name}) for c, g in zip(inferred, given, strict=True)]


def _check_task(task: str | None, found: str, why: str) -> None:
    if task is not None and task != found:
        raise BadRequest(f"the model is a {found} model ({why}), not {task}", hint="leave --task out to infer it")


# -- XGBoost ---------------------------------------------------------------------------------------


def _xgboost(name: str, source: Path, options: ImportOptions, folder: Path) -> Prepared:
    import xgboost as xgb

    if not source.is_file():
        raise BadRequest("an XGBoost model is one file (.json or .ubj)", hint=KIND_HINT)
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(source.read_bytes()))
        config = json.loads(booster.save_config())
        objective = str(config["learner"]["objective"]["name"])
        num_class = int(config["learner"]["learner_model_param"].get("num_class", 0))
    except Exception as exc:
        raise BadRequest(
            f'"{options.source or source.name}" is not an XGBoost model: {library_error_text(exc)}'
        ) from None
    width = booster.num_features()
    names = booster.feature_names
    types: list[str | None] = [None] * width
    if booster.feature_types:
        types = [str(t) for t in booster.feature_types]
    if "c" in types:
        raise BadRequest(
            "the XGBoost model has categorical features, whose categories its file does not name",
            hint="train it through sqlml (ml.train) to score text categories, or import a model of numeric features",
        )
    inferred = None
    if names:
        inferred = [
            Column(name=sql_name(n), type=XGBOOST_TYPES.get(t, "double"), nullable=True)
            for n, t in zip(names, types, strict=True)
        ]
    inputs = _inputs(inferred, options.inputs, width, "the XGBoost model has no feature names")
    bad = [c.name for c in inputs if c.type not in ("double", "bigint", "boolean")]
    if bad:
        raise BadRequest(f"XGBoost inputs are numbers or booleans; {', '.join(bad)} is not", hint="type them double")
    inputs = [c.model_copy(update={"nullable": True}) for c in inputs]  # NULL is a missing value
    if objective == "multi:softmax":
        raise BadRequest(
            "the XGBoost model predicts class numbers (multi:softmax), not probabilities",
            hint="save it with objective multi:softprob; its predictions are the same",
        )
    if objective == "binary:logistic":
        task, labels = "classification", options.labels or []
        if labels and len(labels) != 2:
            raise BadRequest(f"a binary model has 2 labels, not {len(labels)}")
        classes, positive = (tuple(labels), labels[1]) if labels else (("false", "true"), None)
    elif objective == "multi:softprob":
        task, labels = "classification", options.labels or [str(i) for i in range(num_class)]
        if len(labels) != num_class:
            raise BadRequest(f"the model has {num_class} classes, the labels given {len(labels)}")
        classes, positive = tuple(labels), None
    else:
        task, classes, positive = "regression", (), None
    _check_task(options.task, task, f"objective {objective}")
    features = tuple(
        Feature(c.name, "boolean" if c.type == "boolean" else "number", integer=c.type == "bigint") for c in inputs
    )
    plan = FeaturePlan(features, task, classes, positive, target=options.target)  # type: ignore[arg-type]
    booster.save_model(str(folder / "model.json"))
    (folder / PLAN_FILE).write_text(plan.to_json())
    described = dataclasses.replace(plan, target=options.target or "the target")  # for the descriptions
    inferred = output_columns(described)
    if objective == "multi:softprob" and len(classes) == 2:  # a score per class: outputs as multiclass
        inferred = [
            Column(name="label", type="text", description=f"predicted {described.target}"),
            Column(name="probability", type="double", description="probability of the label"),
            *(
                Column(name=column, type="double", description=f"probability of {label!r}")
                for label, column in class_columns(classes).items()
            ),
        ]
    outputs = _outputs(inferred, options.outputs)
    manifest = Manifest(
        name=name,
        runtime="xgboost",
        task=task,  # type: ignore[arg-type]
        description=options.description or f"Imported XGBoost model ({objective}, {width} features).",
        signature=Signature(inputs=inputs, outputs=outputs),
        params={"objective": objective},
        lineage={"classes": list(classes), "imported": {"xgboost": xgb.__version__}},
    )
    return Prepared(manifest)


# -- scikit-learn ----------------------------------------------------------------------------------


def _sklearn(name: str, source: Path, options: ImportOptions, folder: Path) -> Prepared:
    import joblib
    import sklearn
    from sklearn.base import is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    what = options.source or source.name
    if not source.is_file():
        raise BadRequest("a scikit-learn model is one file (.joblib or .pkl)", hint=KIND_HINT)
    try:
        estimator = joblib.load(source)
    except Exception as exc:
        raise BadRequest(f'"{what}" is not a scikit-learn model joblib can read: {library_error_text(exc)}') from None
    if not hasattr(estimator, "predict") or not hasattr(estimator, "get_params"):
        raise BadRequest(f'"{what}" holds a {type(estimator).__name__}, not a scikit-learn estimator or Pipeline')
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        raise BadRequest(
            f'the {type(estimator).__name__} in "{what}" is not fitted', hint="fit it, then save it"
        ) from None
    except TypeError:
        pass  # not an estimator check_is_fitted knows; scoring a row will tell
    width = getattr(estimator, "n_features_in_", None)
    fitted = getattr(estimator, "feature_names_in_", None)
    fitted_names = [str(n) for n in fitted] if fitted is not None else []
    categories = _text_categories(estimator)
    inferred = None
    if fitted_names:
        inferred = [Column(name=sql_name(n), type="text" if n in categories else "double") for n in fitted_names]
    inputs = _inputs(inferred, options.inputs, width, f"the {type(estimator).__name__} was fitted on an array")
    samples = {
        c.name: categories[original]
        for c, original in zip(inputs, fitted_names, strict=False)
        if original in categories
    }
    params: dict[str, Any] = {"columns": fitted_names or None}
    if is_classifier(estimator):
        classes = [str(c) for c in getattr(estimator, "classes_", [])]
        _check_task(options.task, "classification", "a classifier")
        task = "classification"
        params["classes"] = classes
        inferred_outputs = [Column(name="label", type="text", description="predicted class")]
        if hasattr(estimator, "predict_proba"):
            params["method"] = "predict_proba"
            about = f"probability of {classes[-1]!r}" if len(classes) == 2 else "probability of the label"
            inferred_outputs.append(Column(name="probability", type="double", description=about))
            if len(classes) > 2:
                inferred_outputs += [
                    Column(name=column, type="double", description=f"probability of {label!r}")
                    for label, column in class_columns(tuple(classes)).items()
                ]
        else:
            params["method"] = "predict"
    elif is_regressor(estimator):
        _check_task(options.task, "regression", "a regressor")
        task, params["method"] = "regression", "predict"
        inferred_outputs = [Column(name="value", type="double", description="predicted value")]
    else:
        raise BadRequest(f'the {type(estimator).__name__} in "{what}" is neither a classifier nor a regressor')
    shutil.copyfile(source, folder / "model.joblib")
    manifest = Manifest(
        name=name,
        runtime="sklearn",
        task=task,  # type: ignore[arg-type]
        description=options.description or f"Imported scikit-learn {type(estimator).__name__}.",
        signature=Signature(inputs=inputs, outputs=_outputs(inferred_outputs, options.outputs)),
        params=params,
        lineage={"imported": {"sklearn": sklearn.__version__, "estimator": type(estimator).__name__}},
    )
    return Prepared(manifest, samples)


def _text_categories(estimator: Any) -> dict[str, str]:
    """Columns a fitted `ColumnTransformer` inside the estimator encodes as text categories, each
    with one of its categories (a valid value for the test row)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    found: dict[str, str] = {}
    steps = [step for _, step in estimator.steps] if isinstance(estimator, Pipeline) else [estimator]
    for step in steps:
        if not isinstance(step, ColumnTransformer):
            continue
        for _, transformer, columns in getattr(step, "transformers_", []):
            encoders = [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]
            for encoder in encoders:
                values = getattr(encoder, "categories_", None)
                if values is None or isinstance(columns, slice) or not hasattr(columns, "__iter__"):
                    continue
                for column, categories in zip(columns, values, strict=False):
                    if isinstance(column, str) and len(categories) and isinstance(categories[0], str):
                        found[column] = categories[0]
    return found


# -- transformers ----------------------------------------------------------------------------------


def _transformers(name: str, source: Path, options: ImportOptions, folder: Path) -> Prepared:
    from transformers import AutoConfig

    if not source.is_dir():
        raise BadRequest("a transformers model is a save_pretrained folder", hint="send a tar or zip of the folder")
    if not list(source.glob("*.safetensors")):
        raise BadRequest(
            "the transformers folder has no safetensors weights",
            hint="save it with save_pretrained (safetensors is the default); pickled .bin weights run code when "
            "loaded and are refused",
        )
    try:
        config = AutoConfig.from_pretrained(str(source), local_files_only=True)
    except Exception as exc:
        raise BadRequest(f"the folder's config.json is not a transformers config: {library_error_text(exc)}") from None
    architectures = list(getattr(config, "architectures", None) or [])
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise BadRequest(
            f"the folder holds a {', '.join(architectures) or 'model'} without a sequence classification head",
            hint="import a *ForSequenceClassification model (text classification)",
        )
    _check_task(options.task, "text_classification", "a sequence classifier")
    count = int(config.num_labels)
    labels = options.labels or [str(config.id2label[i]) for i in range(count)]
    if len(labels) != count:
        raise BadRequest(f"the model has {count} labels, the labels given {len(labels)}")
    if options.inputs is not None and [c.type for c in options.inputs] != ["text"]:
        raise InvalidInput("a text classifier takes one text input", hint="pass --inputs 'body text'")
    scores = {label: "score_" + sql_name(label).removeprefix("f_") for label in labels}
    named = len(set(scores.values())) == len(scores) and all(is_name(n) for n in scores.values())
    inferred = [
        Column(name="label", type="text", description="the label with the highest score"),
        Column(name="confidence", type="double", description="the score of the label"),
    ]
    if named:
        inferred += [
            Column(name=column, type="double", description=f"score of {label!r}") for label, column in scores.items()
        ]
    for entry in source.rglob("*"):
        if entry.is_file() and not entry.is_symlink() and entry.suffix.lower() not in PICKLED_WEIGHTS:
            target = folder / entry.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(entry, target)
    positions = getattr(config, "max_position_embeddings", None)
    multi_label = getattr(config, "problem_type", None) == "multi_label_classification"
    manifest = Manifest(
        name=name,
        runtime="text_classifier",
        task="classification",
        description=options.description
        or f"Imported text classifier ({', '.join(architectures)}; {', '.join(labels)}).",
        signature=Signature(
            inputs=options.inputs or [Column(name="text", type="text")],
            outputs=_outputs(inferred, options.outputs),
        ),
        params={
            "labels": labels,
            "multi_label": multi_label,
            "max_length": min(MAX_TEXT_LENGTH, int(positions)) if isinstance(positions, int) else MAX_TEXT_LENGTH,
        },
        lineage={"imported": {"architectures": architectures}},
    )
    return Prepared(manifest, {c.name: "a short text" for c in manifest.signature.inputs})
