"""Batches on the wire: JSON columns/rows <-> Arrow tables, and Arrow IPC streams.

JSON batches come in two shapes, `{"columns": {"col": [...]}}` and `{"rows": [{"col": v}]}`;
responses mirror the request's shape. Values are converted to the signature's Arrow types by the
rules of `sqlml.bridge.signature` (so `1` feeds a double column, ISO strings a timestamp column,
and `3.7` or `true` no bigint column), which name the column and row of a value that does not fit.
In `rows`, a missing key is NULL (NULL in, NULL out), but a row with none of the inputs is an
error; keys that are no input are left to `conform()`, which names them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from itertools import chain
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc

from sqlml.bridge.signature import column_from_values, fits_as_is, quoted_names
from sqlml.errors import BadRequest, InvalidInput

ARROW_STREAM = "application/vnd.apache.arrow.stream"
Shape = Literal["columns", "rows"]


def is_arrow(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == ARROW_STREAM


def read_ipc(body: bytes) -> pa.Table:
    """An Arrow IPC stream -> table; garbage -> 400."""
    if not body:
        raise BadRequest("empty Arrow IPC stream", hint=f"send a table as {ARROW_STREAM}")
    try:
        with pa.ipc.open_stream(pa.BufferReader(body)) as reader:
            return reader.read_all()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError) as exc:
        raise BadRequest(f"invalid Arrow IPC stream: {str(exc)[:200]}") from None


def write_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


# what pyarrow raises for a Python value it cannot convert to any type
_CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError)


def json_to_table(
    columns: Mapping[str, Any] | None,
    rows: list[Any] | None,
    types: Mapping[str, pa.DataType] | None = None,
) -> tuple[pa.Table, Shape]:
    """The batch a JSON body holds, and which shape it came in. With `types` (the signature's
    inputs), values are converted by `column_from_values`; without, their types are inferred."""
    if (columns is None) == (rows is None):
        raise BadRequest('send exactly one of "columns" or "rows"', hint='{"columns": {"text": ["great!"]}}')
    if columns is not None:
        return _from_columns(columns, types or {}), "columns"
    assert rows is not None
    return _from_rows(rows, types or {}), "rows"


def _from_columns(columns: Mapping[str, Any], types: Mapping[str, pa.DataType]) -> pa.Table:
    if not isinstance(columns, Mapping):
        raise BadRequest('"columns" must be an object of column name -> list of values')
    lengths = set()
    for name, values in columns.items():
        if not isinstance(values, list):
            raise BadRequest(f'column "{name}" must be a list of values')
        lengths.add(len(values))
    if len(lengths) > 1:
        raise BadRequest("columns have different lengths", detail={"lengths": {k: len(v) for k, v in columns.items()}})
    if not types:
        return _inferred(columns)
    extra = [name for name in columns if name not in types]
    # an input absent from "columns" stays absent: conform() names it
    inputs = {name: target for name, target in types.items() if name in columns}
    return _typed(columns, inputs, extra, lengths.pop() if lengths else 0)


def _from_rows(rows: list[Any], types: Mapping[str, pa.DataType]) -> pa.Table:
    if not isinstance(rows, list) or not all(isinstance(row, Mapping) for row in rows):
        raise BadRequest('"rows" must be a list of objects')
    if not types:
        names = dict.fromkeys(chain.from_iterable(rows))
        return _inferred({name: [row.get(name) for row in rows] for name in names})
    # a key missing from a row is NULL for that row (NULL in, NULL out), unless it misses them all
    columns = {name: [row.get(name) for row in rows] for name in types}
    extra = set().union(*rows).difference(types)
    try:
        table = _typed(columns, types, _in_order(extra, rows), len(rows))
    except InvalidInput as error:
        raise _earliest(error, _first_row_without_inputs(rows, types, range(len(rows)))) from None
    without_inputs = _first_row_without_inputs(rows, types, _rows_of_nulls(table, len(types)))
    if without_inputs is not None:
        raise without_inputs
    return table


def _typed(
    columns: Mapping[str, list[Any]], types: Mapping[str, pa.DataType], extra: list[str], num_rows: int
) -> pa.Table:
    """The signature's columns first, in its order, then the extra ones as NULL columns (conform()
    names them); the first value that does not fit, by row then column, is the error."""
    table = _in_one_call(columns, types)
    if table is not None:
        for name in extra:
            table = table.append_column(name, pa.nulls(num_rows))
        return table
    arrays, errors = [], []
    for name, target in types.items():
        try:
            arrays.append(column_from_values(name, columns[name], target))
        except InvalidInput as error:
            errors.append(error)
    if errors:
        raise min(errors, key=_row_of)
    arrays += [pa.nulls(num_rows) for _ in extra]
    return pa.Table.from_arrays(arrays, names=[*types, *extra])


def _in_one_call(columns: Mapping[str, list[Any]], types: Mapping[str, pa.DataType]) -> pa.Table | None:
    """The common case: every value has a type its column takes as it is, so one Arrow call
    converts them all (the same table the column-by-column path gives)."""
    if not types or not all(fits_as_is(columns[name], target) for name, target in types.items()):
        return None  # (no input column at all: the table's length is that of the extra ones)
    try:
        return pa.Table.from_pydict({name: columns[name] for name in types}, schema=pa.schema(list(types.items())))
    except _CONVERSION_ERRORS:
        return None  # a value out of range: the column-by-column path names it


def _row_of(error: InvalidInput) -> int:
    row = error.detail.get("row")
    return row if isinstance(row, int) else -1  # an error of the whole column comes first


def _in_order(keys: set[str], rows: list[Mapping[str, Any]]) -> list[str]:
    """`keys` in the order they first appear in `rows` (so errors name them deterministically)."""
    if not keys:
        return []
    return [key for key in dict.fromkeys(chain.from_iterable(rows)) if key in keys]


def _rows_of_nulls(table: pa.Table, inputs: int) -> list[int]:
    """Rows whose every input is NULL: only those can miss every input key (one look at the first
    input column when it has no NULL, the common case)."""
    if inputs == 0 or any(table.column(i).null_count == 0 for i in range(inputs)):
        return []
    mask = pc.is_null(table.column(0))
    for i in range(1, inputs):
        mask = pc.and_(mask, pc.is_null(table.column(i)))
    return list(pc.indices_nonzero(mask).to_pylist())


def _first_row_without_inputs(
    rows: list[Mapping[str, Any]], types: Mapping[str, pa.DataType], candidates: Iterable[int]
) -> InvalidInput | None:
    """A row with none of the inputs is an error, not NULL: it is a mistake (an empty object, or
    misspelt keys), where a row with some inputs NULL or missing is NULL in, NULL out."""
    for row in candidates:
        if rows[row].keys().isdisjoint(types):
            given = list(rows[row])
            hint = (
                f"the row has only {quoted_names(given)}" if given else "send the inputs (null ones give null outputs)"
            )
            return InvalidInput(
                f"row {row} is missing every input column: {quoted_names(list(types))}",
                hint=hint,
                detail={"row": row, "missing": list(types), "given": given[:20]},
            )
    return None


def _earliest(error: InvalidInput, other: InvalidInput | None) -> InvalidInput:
    return other if other is not None and _row_of(other) < _row_of(error) else error


def _inferred(columns: Mapping[str, list[Any]]) -> pa.Table:
    """Each column converted by itself with its type inferred (equal-length lists already checked)."""
    return pa.Table.from_arrays(
        [_inferred_array(name, values) for name, values in columns.items()], names=list(columns)
    )


def _inferred_array(name: str, values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except _CONVERSION_ERRORS as exc:
        raise InvalidInput(
            f'column "{name}" holds values of mixed or unsupported types',
            hint=str(exc).splitlines()[0][:200],
            detail={"column": name},
        ) from None


def table_to_json(table: pa.Table, shape: Shape) -> dict[str, Any]:
    """`{"columns": {...}}` or `{"rows": [...]}` with JSON-safe values (NaN -> null, times -> ISO)."""
    if shape == "columns":
        return {"columns": {name: [_jsonable(v) for v in col] for name, col in table.to_pydict().items()}}
    return {"rows": [{k: _jsonable(v) for k, v in row.items()} for row in table.to_pylist()]}


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
