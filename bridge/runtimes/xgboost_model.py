"""The XGBoost runtime: scores tabular models (lead scoring) and explains them with XGBoost's SHAP.

The artifact is one XGBoost JSON model file, `model.json`. The feature matrix is built straight
from the Arrow columns in signature order (one vectorised copy a column, no per-row Python), so
scoring through sqlml stays close to a raw `Booster.inplace_predict` on the same array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import xgboost as xgb

from sqlml.bridge.runtimes.base import Runtime
from sqlml.errors import InvalidInput, ModelLoadError

MODEL_FILE = "model.json"
_SMALL_BATCH_ROWS = 8192
_MULTITHREAD_ROWS = 16_384
_BOOSTER_OVERHEAD_BYTES = 384 * 1024

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


def feature_matrix(batch: pa.Table, columns: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
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


class XGBoostRuntime(Runtime):
    name = "xgboost"

    booster: xgb.Booster | None = None
    _threads = -1

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
        self._threads = 0  # XGBoost's default: all cores
        self.booster = booster

    def _use_threads_for(self, rows: int) -> None:
        # A thread pool costs more than it saves on a few rows (single-row calls from psql, the
        # bridge's small coalesced batches); big batches (DuckDB vectors) use every core.
        threads = 1 if rows < _MULTITHREAD_ROWS else 0
        if threads != self._threads and self.booster is not None:
            self.booster.set_param({"nthread": threads})
            self._threads = threads

    def _booster(self) -> xgb.Booster:
        if self.booster is None:
            raise ModelLoadError(f'model "{self.manifest.name}" is not loaded')
        return self.booster

    def predict(self, batch: pa.Table) -> pa.Table:
        booster = self._booster()
        if batch.num_rows == 0:
            return pa.table({self.output_name: pa.array([], pa.float64())})
        self._use_threads_for(batch.num_rows)
        scores = booster.inplace_predict(feature_matrix(batch, self.features), validate_features=False)
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
        self._use_threads_for(rows)
        dmatrix = xgb.DMatrix(matrix)
        shap = np.asarray(booster.predict(dmatrix, pred_contribs=True, validate_features=False), dtype=np.float64)
        margin = np.asarray(booster.predict(dmatrix, output_margin=True, validate_features=False), dtype=np.float64)
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
