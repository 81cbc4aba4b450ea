"""Check and cast an Arrow batch against a model's input signature.

Every engine and the HTTP API funnel their batches through `conform()`, so a missing, extra or
mistyped column gets the same error everywhere, naming the column and suggesting close names.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from sqlml.bridge.manifest import ColumnType, Manifest
from sqlml.errors import InvalidInput, close_names

ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "double": pa.float64(),
    "bigint": pa.int64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us"),
}


def arrow_type(column_type: ColumnType) -> pa.DataType:
    return ARROW_TYPES[column_type]


def conform(manifest: Manifest, batch: pa.Table) -> pa.Table:
    """The batch with exactly the signature's input columns, in order, cast to their types."""
    inputs = manifest.signature.inputs
    if batch.num_columns == len(inputs) and all(
        field.name == column.name and field.type == arrow_type(column.type)
        for field, column in zip(batch.schema, inputs, strict=True)
    ):
        return batch  # the common case (typed DuckDB functions, the bridge's clients): nothing to do
    expected = manifest.signature.input_names()
    given = list(batch.column_names)
    model = manifest.name
    for column in given:
        if column not in expected:
            close = close_names(column, expected)
            raise InvalidInput(
                f'model "{model}" has no input column "{column}"',
                hint=f"did you mean {', '.join(repr(c) for c in close)}?" if close else _expected_hint(expected),
                detail={"model": model, "column": column, "expected": expected},
            )
    missing = [c for c in expected if c not in given]
    if missing:
        raise InvalidInput(
            f'model "{model}" is missing input column{"s" if len(missing) > 1 else ""} '
            + ", ".join(f'"{c}"' for c in missing[:10])
            + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""),
            hint=_expected_hint(expected),
            detail={"model": model, "missing": missing, "expected": expected},
        )
    arrays = []
    for column in manifest.signature.inputs:
        arrays.append(_cast(model, column.name, batch.column(column.name), arrow_type(column.type)))
    return pa.Table.from_arrays(arrays, names=expected)


def _cast(model: str, name: str, values: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    if values.type == target:
        return values
    if pa.types.is_null(values.type):
        return pa.chunked_array([pa.nulls(len(values), target)])
    textual_to_number = pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
    if textual_to_number and not (pa.types.is_string(target) or pa.types.is_large_string(target)):
        kind = "number" if target != pa.bool_() else "boolean"
        raise InvalidInput(
            f'column "{name}" of model "{model}" must be a {kind}, got text',
            detail={"model": model, "column": name, "expected": str(target), "got": str(values.type)},
        )
    try:
        return pc.cast(values, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(
            f'column "{name}" of model "{model}" must be {target}, got {values.type}',
            hint=str(exc).splitlines()[0][:200],
            detail={"model": model, "column": name, "expected": str(target), "got": str(values.type)},
        ) from None


def _expected_hint(expected: list[str]) -> str:
    shown = ", ".join(expected[:12])
    return f"expected columns: {shown}" + (f" … ({len(expected)} in all)" if len(expected) > 12 else "")


def null_rows(batch: pa.Table) -> pa.Array:
    """A boolean mask of rows with any NULL input (NULL in, NULL out)."""
    if not any(column.null_count for column in batch.columns):  # O(1) a column: the common case
        return pa.nulls(batch.num_rows, pa.bool_()).fill_null(False)
    mask = pa.array([False] * batch.num_rows, pa.bool_())
    for column in batch.columns:
        mask = pc.or_(mask, pc.is_null(column))
    return mask


def scatter(outputs: pa.Table, keep: pa.Array, schema: pa.Schema) -> pa.Table:
    """Put `outputs` (one row per kept row) back into place, NULL where `keep` is false."""
    total = len(keep)
    if outputs.num_rows == total:
        return outputs
    positions = pc.subtract(pc.cumulative_sum(pc.cast(keep, pa.int64())), 1)
    indices = pc.if_else(keep, positions, pa.scalar(None, pa.int64()))
    return pa.Table.from_arrays([pc.take(outputs.column(f.name), indices) for f in schema], schema=schema)
