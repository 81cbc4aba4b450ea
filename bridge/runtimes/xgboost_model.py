"""The XGBoost runtime: scores tabular models (classification, regression) and explains them with SHAP.

The artifact is an XGBoost JSON model file, `model.json`, and the feature plan it was trained
with, `features.json` (`sqlml.bridge.tabular_features`): which inputs are numbers, booleans, text
categories or timestamps, the categories and the class labels. An artifact without a plan (made
before plans) has only numeric inputs, and its matrix is built straight from the Arrow columns in
signature order (one vectorised copy a column, no per-row Python), so scoring through sqlml stays
close to a raw `Booster.inplace_predict` on the same array.

Outputs follow the plan's task: a probability (binary, boolean target), a label and its
probability (a text target; multiclass adds one probability column per class), or a value
(regression). NULL inputs are missing values, which XGBoost routes as it learned to; a category
value training never saw is missing too, and counted (`drain_counts`, the bridge's
`sqlml_unseen_categories` metric).

The booster runs each call on one thread and is never changed after load; XGBoost's predict
calls are thread-safe, so the runtime is too (`thread_safe`): embedded DuckDB scores its
2,048-row vectors on all of its threads at once. A batch of `MULTITHREAD_ROWS` rows or more is
cut into one slice per core, scored side by side on a shared thread pool.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xgboost as xgb

from sqlml.bridge.runtimes.base import Runtime
from sqlml.bridge.tabular_features import FeaturePlan
from sqlml.errors import InvalidInput, ModelLoadError

MODEL_FILE = "model.json"
_SMALL_BATCH_ROWS = 8192
MULTITHREAD_ROWS = 16_384
_BOOSTER_OVERHEAD_BYTES = 384 * 1024
_CORES = os.cpu_count() or 1
_SLICES = ThreadPoolExecutor(max_workers=_CORES, thread_name_prefix="sqlml-xgboost")

Matrix = np.ndarray[Any, np.dtype[np.float32]]

CONTRIBUTION_TYPE = pa.struct(
    [pa.field("feature", pa.string()), pa.field("value", pa.float64()), pa.field("contribution", pa.float64())]
)
EXPLAIN_SCHEMA = pa.schema(
    [
        pa.field("contributions", pa.list_(CONTRIBUTION_TYPE)),
        pa.field("bias", pa.float64()),
        pa.field("margin", pa.float64()),
    ]
)


def feature_matrix(batch: pa.Table, columns: list[str]) -> Matrix:
    """A C-ordered float32 matrix of numeric `columns` (NULL as NaN)."""
    rows = batch.num_rows
    if 0 < rows <= _SMALL_BATCH_ROWS:
        # a DuckDB vector: Arrow's own row-major conversion (one C++ pass, upcasting mixed types)
        # costs about 60 % of filling the matrix column by column from Python
        table = batch.select(columns).combine_chunks()
        if any(pa.types.is_boolean(field.type) for field in table.schema):  # to_tensor() takes numbers only
            table = table.cast(
                pa.schema([(f.name, pa.float32() if pa.types.is_boolean(f.type) else f.type) for f in table.schema])
            )
        if any(column.null_count for column in table.columns):  # to_tensor() refuses NULLs: NaN, as missing
            table = table.cast(pa.schema([(f.name, pa.float64()) for f in table.schema]))
            table = pa.table([pc.fill_null(c, np.nan) for c in table.columns], names=table.column_names)
        return np.asarray(table.to_batches()[0].to_tensor(row_major=True)).astype(np.float32)
    # large batches: contiguous column copies, then one cache-friendly transpose (about 2x faster
    # than strided writes into a row-major matrix, and than the tensor path at this size)
    by_column = np.empty((len(columns), rows), dtype=np.float32)
    for position, name in enumerate(columns):
        by_column[position] = batch.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(by_column.T)


def in_slices(matrix: Matrix, score: Callable[[Matrix], np.ndarray]) -> np.ndarray:
    """`score(matrix)`, one slice of rows per core in parallel when the matrix is large (a thread
    pool costs more than it saves on a few rows: psql's single rows, coalesced bridge requests,
    DuckDB's vectors, which DuckDB itself spreads over its threads)."""
    rows = len(matrix)
    if rows < MULTITHREAD_ROWS or _CORES == 1:
        return score(matrix)
    bounds = np.linspace(0, rows, _CORES + 1).astype(int)
    parts = _SLICES.map(lambda start, stop: score(matrix[start:stop]), bounds[:-1], bounds[1:])
    return np.concatenate(list(parts), axis=0)


class XGBoostRuntime(Runtime):
    name = "xgboost"
    thread_safe = True

    booster: xgb.Booster | None = None

    def load(self) -> None:
        path = self.path / MODEL_FILE
        if not path.is_file():
            raise ModelLoadError(f'model "{self.manifest.name}" has no {MODEL_FILE} in its artifact')
        booster = xgb.Booster()
        booster.load_model(str(path))
        signature = self.manifest.signature
        plan = FeaturePlan.load(self.path, self.manifest.name, signature.input_names())
        width = len(plan.matrix_names) if plan is not None else len(signature.inputs)
        if booster.num_features() != width:
            raise ModelLoadError(
                f'model "{self.manifest.name}": the booster has {booster.num_features()} features, '
                f"the {'feature plan' if plan else 'signature'} {width}"
            )
        self.plan = plan
        self.features = signature.input_names()
        self.outputs = signature.output_names()
        self.classes = list(plan.classes) if plan is not None else []
        self._unseen: dict[str, int] = {}
        self._unseen_lock = threading.Lock()
        self._serialized_size = len(booster.save_raw("ubj"))
        booster.set_param({"nthread": 1})  # once, before any call: parallelism comes from callers and slices
        self.booster = booster

    def _booster(self) -> xgb.Booster:
        if self.booster is None:
            raise ModelLoadError(f'model "{self.manifest.name}" is not loaded')
        return self.booster

    def _matrix(self, batch: pa.Table) -> Matrix:
        if self.plan is None:
            return feature_matrix(batch, self.features)
        matrix, unseen = self.plan.matrix(batch)
        if unseen:
            with self._unseen_lock:
                for feature, count in unseen.items():
                    self._unseen[feature] = self._unseen.get(feature, 0) + count
        return matrix

    def _score(self, booster: xgb.Booster, matrix: Matrix) -> np.ndarray:
        if self.plan is not None and self.plan.has_categories:
            # categorical splits need the feature types, which only a DMatrix carries
            types = self.plan.matrix_types

            def score(part: Matrix) -> np.ndarray:
                dmatrix = xgb.DMatrix(part, feature_types=types, enable_categorical=True)
                return np.asarray(booster.predict(dmatrix, validate_features=False))

            return in_slices(matrix, score)
        return in_slices(matrix, lambda part: booster.inplace_predict(part, validate_features=False))

    def scores(self, batch: pa.Table) -> np.ndarray:
        """The booster's raw answer, one row per input row: a probability or value, or one
        probability per class (what `evaluate` compares with the targets)."""
        booster = self._booster()
        return np.asarray(self._score(booster, self._matrix(batch)), dtype=np.float64).reshape(batch.num_rows, -1)

    def predict(self, batch: pa.Table) -> pa.Table:
        booster = self._booster()
        if batch.num_rows == 0:
            return self._outputs(np.empty((0, max(1, len(self.classes) if len(self.outputs) > 2 else 1))))
        scores = np.asarray(self._score(booster, self._matrix(batch)), dtype=np.float64)
        return self._outputs(scores.reshape(batch.num_rows, -1))

    def _outputs(self, scores: np.ndarray) -> pa.Table:
        """The signature's output columns from the booster's scores (one column, or one per class)."""
        names = self.outputs
        if len(names) == 1:  # a probability (binary:logistic) or a value (reg:*)
            return pa.table({names[0]: pa.array(scores[:, 0])})
        classes = np.asarray(self.classes, dtype=object)
        if scores.shape[1] == 1:  # binary with a text target: class 1 is the positive label
            positive = scores[:, 0]
            labels = classes[(positive >= 0.5).astype(int)]
            return pa.table({names[0]: pa.array(labels, pa.string()), names[1]: pa.array(positive)})
        chosen = scores.argmax(axis=1)
        columns: dict[str, pa.Array] = {
            names[0]: pa.array(classes[chosen], pa.string()),
            names[1]: pa.array(scores[np.arange(len(scores)), chosen]),
        }
        for position, name in enumerate(names[2:]):
            columns[name] = pa.array(scores[:, position])
        return pa.table(columns)

    def drain_counts(self) -> dict[str, int]:
        """Category values never seen at training, per feature, since the last call."""
        with self._unseen_lock:
            counts, self._unseen = self._unseen, {}
        return {f"unseen_category:{feature}": count for feature, count in counts.items()}

    def explain(self, batch: pa.Table, top_k: int) -> pa.Table:
        """SHAP values per row: the `top_k` largest by absolute value, the bias and the margin.

        The contributions of all features plus the bias add up to the margin (log-odds for a
        classifier; for a multiclass model, of the predicted class); only the `top_k` largest are
        returned. A timestamp input contributes through its calendar parts (`<name>_month`, ...);
        a category's `value` is NULL (the contribution is of the text the row holds).
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InvalidInput(f"top_k must be a positive integer, got {top_k!r}")
        booster = self._booster()
        rows = batch.num_rows
        if rows == 0:
            return EXPLAIN_SCHEMA.empty_table()
        matrix = self._matrix(batch)
        plan = self.plan
        names = plan.matrix_names if plan is not None else self.features
        types = plan.matrix_types if plan is not None else None

        def shap_and_margin(part: Matrix) -> np.ndarray:
            dmatrix = xgb.DMatrix(part, feature_types=types, enable_categorical=bool(types and "c" in types))
            shap = np.asarray(booster.predict(dmatrix, pred_contribs=True, validate_features=False))
            margin = np.asarray(booster.predict(dmatrix, output_margin=True, validate_features=False))
            if shap.ndim == 3:  # multiclass: (rows, classes, features + 1); explain the predicted class
                chosen = margin.argmax(axis=1)
                shap = shap[np.arange(len(part)), chosen]
                margin = margin[np.arange(len(part)), chosen]
            return np.column_stack([shap, margin.reshape(-1)]).astype(np.float64)

        both = in_slices(matrix, shap_and_margin)
        shap, margin = both[:, :-1], both[:, -1]
        contributions, bias = shap[:, :-1], shap[:, -1]
        keep = min(top_k, contributions.shape[1])
        # stable sort on -|c|: ties keep the signature order, so results are reproducible
        order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :keep]
        row_index = np.arange(rows)[:, None]
        values = matrix[row_index, order].astype(np.float64).ravel()
        is_category = np.asarray([t == "c" for t in (types or [])] or [False] * len(names))[order].ravel()
        structs = pa.StructArray.from_arrays(
            [
                pa.array(np.asarray(names, dtype=object)[order].ravel(), pa.string()),
                pa.array(values, mask=is_category | np.isnan(values)),
                pa.array(contributions[row_index, order].ravel()),
            ],
            fields=list(CONTRIBUTION_TYPE),
        )
        offsets = pa.array(np.arange(0, rows * keep + 1, keep, dtype=np.int32))
        return pa.Table.from_arrays(
            [pa.ListArray.from_arrays(offsets, structs), pa.array(bias), pa.array(margin.reshape(-1))],
            schema=EXPLAIN_SCHEMA,
        )

    def unload(self) -> None:
        self.booster = None

    def memory_bytes(self) -> int:
        # The in-memory booster is larger than its serialized form, and each one carries fixed
        # overhead: measured RSS growth was ~0.3-0.6 MiB per loaded 23 KiB model (bench/many_models.py).
        serialized = getattr(self, "_serialized_size", 0) or super().memory_bytes()
        return 4 * serialized + _BOOSTER_OVERHEAD_BYTES
