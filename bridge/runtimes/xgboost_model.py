"""The XGBoost runtime: scores tabular models (lead scoring) and explains them with XGBoost's SHAP.

The artifact is one XGBoost JSON model file, `model.json`. The feature matrix is built straight
from the Arrow columns in signature order (one vectorised copy a column, no per-row Python), so
scoring through sqlml stays close to a raw `Booster.inplace_predict` on the same array.

The booster runs each call on one thread and is never changed after load; XGBoost's predict
calls are thread-safe, so the runtime is too (`thread_safe`): embedded DuckDB scores its
2,048-row vectors on all of its threads at once. A batch of `MULTITHREAD_ROWS` rows or more is
cut into one slice per core, scored side by side on a shared thread pool.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import xgboost as xgb

from sqlml.bridge.runtimes.base import Runtime
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
    """A C-ordered float32 matrix of `columns` (rows already free of NULLs)."""
    rows = batch.num_rows
    if 0 < rows <= _SMALL_BATCH_ROWS:
        # a DuckDB vector: Arrow's own row-major conversion (one C++ pass, upcasting mixed types)
        # costs about 60 % of filling the matrix column by column from Python
        table = batch.select(columns).combine_chunks()
        if any(pa.types.is_boolean(field.type) for field in table.schema):  # to_tensor() takes numbers only
            table = table.cast(
                pa.schema([(f.name, pa.float32() if pa.types.is_boolean(f.type) else f.type) for f in table.schema])
            )
        return np.asarray(table.to_batches()[0].to_tensor(row_major=True)).astype(np.float32)
    # large batches: contiguous column copies, then one cache-friendly transpose (about 2x faster
    # than strided writes into a row-major matrix, and than the tensor path at this size)
    by_column = np.empty((len(columns), rows), dtype=np.float32)
    for position, name in enumerate(columns):
        by_column[position] = batch.column(name).to_numpy()
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
        expected = self.manifest.signature.input_names()
        if booster.num_features() != len(expected):
            raise ModelLoadError(
                f'model "{self.manifest.name}": the booster has {booster.num_features()} features, '
                f"the signature {len(expected)}"
            )
        self.features = expected
        self.output_name = self.manifest.signature.outputs[0].name
        self._serialized_size = len(booster.save_raw("ubj"))
        booster.set_param({"nthread": 1})  # once, before any call: parallelism comes from callers and slices
        self.booster = booster

    def _booster(self) -> xgb.Booster:
        if self.booster is None:
            raise ModelLoadError(f'model "{self.manifest.name}" is not loaded')
        return self.booster

    def predict(self, batch: pa.Table) -> pa.Table:
        booster = self._booster()
        if batch.num_rows == 0:
            return pa.table({self.output_name: pa.array([], pa.float64())})
        matrix = feature_matrix(batch, self.features)
        scores = in_slices(matrix, lambda part: booster.inplace_predict(part, validate_features=False))
        # binary:logistic already gives probabilities, reg:* gives the prediction: either way one column
        return pa.table({self.output_name: pa.array(np.asarray(scores, dtype=np.float64).reshape(-1))})

    def explain(self, batch: pa.Table, top_k: int) -> pa.Table:
        """SHAP values per row: the `top_k` largest by absolute value, the bias and the margin.

        The contributions of all features plus the bias add up to the margin (log-odds for a
        classifier); only the `top_k` largest are returned.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InvalidInput(f"top_k must be a positive integer, got {top_k!r}")
        booster = self._booster()
        rows = batch.num_rows
        if rows == 0:
            return EXPLAIN_SCHEMA.empty_table()
        matrix = feature_matrix(batch, self.features)

        def shap_and_margin(part: Matrix) -> np.ndarray:
            dmatrix = xgb.DMatrix(part)
            shap = booster.predict(dmatrix, pred_contribs=True, validate_features=False)
            margin = booster.predict(dmatrix, output_margin=True, validate_features=False)
            return np.column_stack([shap, margin.reshape(-1)]).astype(np.float64)

        both = in_slices(matrix, shap_and_margin)
        shap, margin = both[:, :-1], both[:, -1]
        contributions, bias = shap[:, :-1], shap[:, -1]
        keep = min(top_k, contributions.shape[1])
        # stable sort on -|c|: ties keep the signature order, so results are reproducible
        order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :keep]
        row_index = np.arange(rows)[:, None]
        structs = pa.StructArray.from_arrays(
            [
                pa.array(np.asarray(self.features, dtype=object)[order].ravel(), pa.string()),
                pa.array(matrix[row_index, order].astype(np.float64).ravel()),
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
