"""Check and cast a batch against a model's input signature: the one place the typing rules live.

Every engine and the HTTP API funnel their batches through `conform()`, so a missing, extra or
mistyped column gets the same error everywhere, naming the column (and the row, for a value that
does not fit) and suggesting close names. JSON values reach Arrow through `column_from_values()`,
which applies the same rules a value at a time: a batch is accepted, and converted, exactly as its
rows would be one by one. Only lossless conversions pass: an integral number feeds a `bigint`
(`3.0`, not `3.7`), any number feeds a `double`, ISO text feeds a `timestamp`; a boolean is never
a number and a number is never text.
"""

from __future__ import annotations

import json
from typing import Any

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
_WANTED = {
    pa.string(): "text",
    pa.float64(): "a number",
    pa.int64(): "an integer",
    pa.bool_(): "a boolean",
    pa.timestamp("us"): "a timestamp",
}
# the kinds of Arrow column each column type takes, cast (safely: a value that does not fit fails)
_ARROW_SOURCES = {
    pa.string(): frozenset({"text"}),
    pa.float64(): frozenset({"integer", "float", "decimal"}),
    pa.int64(): frozenset({"integer", "float", "decimal"}),
    pa.bool_(): frozenset({"boolean"}),
    pa.timestamp("us"): frozenset({"timestamp", "date", "text"}),
}
# the Python types of JSON values each column type takes as they are (None is NULL for all)
_JSON_SOURCES: dict[pa.DataType, frozenset[type]] = {
    pa.string(): frozenset({str, type(None)}),
    pa.float64(): frozenset({float, int, type(None)}),
    pa.int64(): frozenset({int, type(None)}),
    pa.bool_(): frozenset({bool, type(None)}),
    pa.timestamp("us"): frozenset({str, type(None)}),
}
# what pyarrow raises for a value it cannot convert or cast to the type asked
_CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError)


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
    _check_columns(manifest.name, expected, list(batch.column_names))
    arrays = []
    for column in manifest.signature.inputs:
        arrays.append(_cast(manifest.name, column.name, batch.column(column.name), arrow_type(column.type)))
    return pa.Table.from_arrays(arrays, names=expected)


def _check_columns(model: str, expected: list[str], given: list[str]) -> None:
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
            f'model "{model}" is missing input column{"s" if len(missing) > 1 else ""} ' + quoted_names(missing),
            hint=_expected_hint(expected),
            detail={"model": model, "missing": missing, "expected": expected},
        )


def quoted_names(names: list[str], shown: int = 10) -> str:
    """`"a", "b" and 3 more`."""
    text = ", ".join(f'"{c}"' for c in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _cast(model: str, name: str, values: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    if values.type == target:
        return values
    if pa.types.is_null(values.type):
        return pa.chunked_array([pa.nulls(len(values), target)])
    where = f'column "{name}" of model "{model}"'
    detail = {"model": model, "column": name, "expected": str(target), "got": str(values.type)}
    kind = _arrow_kind(values.type)
    if kind not in _ARROW_SOURCES[target]:
        raise InvalidInput(f"{where} must be {_WANTED[target]}, got {kind}", detail=detail)
    try:
        return pc.cast(values, target, safe=True)
    except _CONVERSION_ERRORS as exc:
        row = _first_failing_row(values, target)
        raise value_error(where, target, values[row].as_py(), row, detail, str(exc)) from None


def _arrow_kind(data_type: pa.DataType) -> str:
    if pa.types.is_dictionary(data_type):
        return _arrow_kind(data_type.value_type)
    kinds = (
        ("text", pa.types.is_string),
        ("text", pa.types.is_large_string),
        ("text", pa.types.is_string_view),
        ("integer", pa.types.is_integer),
        ("float", pa.types.is_floating),
        ("decimal", pa.types.is_decimal),
        ("boolean", pa.types.is_boolean),
        ("timestamp", pa.types.is_timestamp),
        ("date", pa.types.is_date),
    )
    return next((kind for kind, test in kinds if test(data_type)), str(data_type))


def _first_failing_row(values: pa.ChunkedArray, target: pa.DataType) -> int:
    """The first row whose value does not cast (bisection: a few casts, each of a smaller slice)."""
    low, high = 0, len(values)  # the first failure lies in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            pc.cast(values.slice(low, middle - low), target, safe=True)
            low = middle
        except _CONVERSION_ERRORS:
            high = middle
    return low


def value_error(
    where: str, target: pa.DataType, value: Any, row: int, detail: dict[str, Any], reason: str = ""
) -> InvalidInput:
    """`column "b" … must be an integer, got 3.7 at row 2`, rows counted from 0."""
    shown = _shown(value)
    return InvalidInput(
        f"{where} must be {_WANTED[target]}, got {shown} at row {row}",
        hint=(reason.splitlines()[0][:200] if reason else None) or "rows are counted from 0",
        detail={**detail, "row": row, "value": shown},
    )


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return json.dumps(value[:40] + ("…" if len(value) > 40 else ""))
    try:
        return json.dumps(value)[:60]
    except (TypeError, ValueError):
        return str(value)[:60]


def fits_as_is(values: list[Any], target: pa.DataType) -> bool:
    """Whether pyarrow converts `values` to `target` by these rules in one call (no timestamps:
    their text is parsed by a cast)."""
    return not pa.types.is_timestamp(target) and set(map(type, values)) <= _JSON_SOURCES[target]


def column_from_values(name: str, values: list[Any], target: pa.DataType) -> pa.Array:
    """Decoded JSON values -> an array of `target`, by the rules a value at a time; a value that does
    not fit is an `InvalidInput` naming the column and its row. One Arrow call when every value has
    a type the column takes as it is (the common case)."""
    if set(map(type, values)) <= _JSON_SOURCES[target]:
        try:
            return _values_to_array(values, target)
        except _CONVERSION_ERRORS:
            pass  # a value out of range: found below
    return _checked_values_to_array(name, values, target)


def _values_to_array(values: list[Any], target: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(target):
        return pa.array(values, pa.string()).cast(target)  # ISO 8601 text, parsed by Arrow
    return pa.array(values, target)


def _checked_values_to_array(name: str, values: list[Any], target: pa.DataType) -> pa.Array:
    """The slow path: each value checked and converted by itself, so the first that does not fit
    is found (and a batch gets the very values its rows would get one by one)."""
    allowed = _JSON_SOURCES[target]
    fitted = []
    for row, value in enumerate(values):
        kind = type(value)
        if kind is float and target == pa.int64() and value.is_integer():
            value = int(value)  # 3.0 is an integer; 3.7 and NaN are not
        elif kind not in allowed:
            raise _json_value_error(name, target, value, row)
        fitted.append(value)
    try:
        return _values_to_array(fitted, target)
    except _CONVERSION_ERRORS as exc:
        failure = exc  # a value out of range or unparsable: which one?
    for row, value in enumerate(fitted):
        try:
            _values_to_array([value], target)
        except _CONVERSION_ERRORS as exc:
            reason = "outside the 64-bit range" if isinstance(exc, OverflowError) else str(exc)
            raise _json_value_error(name, target, values[row], row, reason) from None
    raise InvalidInput(f'column "{name}" cannot be converted to {target}: {str(failure)[:200]}')


_JSON_TYPE_NAMES = {str: "string", bool: "boolean", int: "number", float: "number", dict: "object", list: "array"}


def _json_value_error(name: str, target: pa.DataType, value: Any, row: int, reason: str = "") -> InvalidInput:
    detail = {"column": name, "expected": str(target), "got": _JSON_TYPE_NAMES.get(type(value), type(value).__name__)}
    return value_error(f'column "{name}"', target, value, row, detail, reason)


def _expected_hint(expected: list[str]) -> str:
    shown = ", ".join(expected[:12])
    return f"expected columns: {shown}" + (f" … ({len(expected)} in all)" if len(expected) > 12 else "")


def null_rows(batch: pa.Table, names: list[str] | None = None) -> pa.Array:
    """A boolean mask of rows with a NULL in any of the columns `names` (default: all; NULL in,
    NULL out)."""
    columns = batch.columns if names is None else [batch.column(n) for n in names]
    if not any(column.null_count for column in columns):  # O(1) a column: the common case
        return pa.nulls(batch.num_rows, pa.bool_()).fill_null(False)
    mask = pa.array([False] * batch.num_rows, pa.bool_())
    for column in columns:
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
