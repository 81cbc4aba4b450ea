"""Batches on the wire: JSON columns/rows <-> Arrow tables, and Arrow IPC streams.

JSON batches come in two shapes, `{"columns": {"col": [...]}}` and `{"rows": [{"col": v}]}`;
responses mirror the request's shape. Values are built with the signature's Arrow types when they
fit (so `1` feeds a double column and ISO strings feed a timestamp column); anything else is left
to `sqlml.bridge.signature.conform`, which names the offending column.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import pyarrow as pa
import pyarrow.ipc

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


# what pyarrow raises for a Python value it cannot convert to the type asked (or to any type)
_CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError)


def json_to_table(
    columns: Mapping[str, Any] | None,
    rows: list[Any] | None,
    types: Mapping[str, pa.DataType] | None = None,
) -> tuple[pa.Table, Shape]:
    """The batch a JSON body holds, and which shape it came in."""
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
    if columns and columns.keys() == types.keys():
        typed = _all_typed(lambda schema: pa.Table.from_pydict(dict(columns), schema=schema), types)
        if typed is not None:
            return typed
    return _by_column(columns, types)


def _from_rows(rows: list[Any], types: Mapping[str, pa.DataType]) -> pa.Table:
    if not isinstance(rows, list) or not all(isinstance(row, Mapping) for row in rows):
        raise BadRequest('"rows" must be a list of objects')
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    # a key missing from a row is NULL for that row (NULL in, NULL out)
    if rows and names.keys() == types.keys():
        typed = _all_typed(lambda schema: pa.Table.from_pylist(rows, schema=schema), types)
        if typed is not None:
            return typed
    return _by_column({name: [row.get(name) for row in rows] for name in names}, types)


def _all_typed(build: Callable[[pa.Schema], pa.Table], types: Mapping[str, pa.DataType]) -> pa.Table | None:
    """The batch built in one Arrow call, columns in the signature's order, when every value
    converts to its column's type; else None, and `_by_column` converts what it can and leaves
    the rest to `conform()` to explain. Both give the same table when this one works."""
    try:
        return build(pa.schema(list(types.items())))
    except _CONVERSION_ERRORS:
        return None


def _by_column(columns: Mapping[str, list[Any]], types: Mapping[str, pa.DataType]) -> pa.Table:
    """Each column converted by itself (equal-length lists already checked)."""
    arrays = [_array(name, values, types.get(name)) for name, values in columns.items()]
    return pa.Table.from_arrays(arrays, names=list(columns))


def _array(name: str, values: list[Any], target: pa.DataType | None) -> pa.Array:
    if target is not None:
        try:
            if pa.types.is_timestamp(target) and any(isinstance(v, str) for v in values):
                return pa.array(values, pa.string()).cast(target)
            return pa.array(values, target)
        except _CONVERSION_ERRORS:
            pass  # inferred below; conform() then explains the mismatch
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
