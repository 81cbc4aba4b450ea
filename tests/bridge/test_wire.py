"""JSON batches to Arrow: one Arrow call when every value has its column's type, else the
column-by-column path, which keeps what it cannot convert for `conform()` to explain."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from sqlml.bridge import wire
from sqlml.bridge.wire import json_to_table

TYPES = {"a": pa.float64(), "n": pa.int64(), "t": pa.string()}


def test_typed_rows_come_out_in_signature_order_with_missing_keys_null() -> None:
    rows = [{"t": "x", "n": 1, "a": 2}, {"a": 0.5, "n": None, "t": "y"}, {"n": 3, "t": "z"}]
    table, shape = json_to_table(None, rows, TYPES)
    assert shape == "rows"
    assert table.schema == pa.schema(list(TYPES.items()))
    assert table.to_pydict() == {"a": [2.0, 0.5, None], "n": [1, None, 3], "t": ["x", "y", "z"]}


def test_one_arrow_call_and_the_column_path_give_the_same_table() -> None:
    columns = {"n": [1, 2], "a": [1, 2.5], "t": ["p", None]}
    fast, _ = json_to_table(columns, None, TYPES)
    slow = wire._by_column(columns, {})  # no types: every column by itself, inferred
    assert fast.equals(pa.table({"a": [1.0, 2.5], "n": [1, 2], "t": ["p", None]}))
    assert slow.select(["a", "n", "t"]).equals(fast)


def test_a_value_of_another_type_leaves_its_column_to_conform() -> None:
    rows = [{"a": "not a number", "n": 1, "t": "x"}]
    table, _ = json_to_table(None, rows, TYPES)
    assert table.schema.field("a").type == pa.string()  # inferred, so conform() names the column
    assert table.schema.field("n").type == pa.int64()


def test_timestamps_given_as_text_are_parsed() -> None:
    table, _ = json_to_table(None, [{"when": "2026-11-26T10:00:00"}], {"when": pa.timestamp("us")})
    assert table.column("when").to_pylist() == [dt.datetime(2026, 11, 26, 10, 0)]


def test_no_rows_is_a_batch_without_columns() -> None:
    table, _ = json_to_table(None, [], TYPES)
    assert table.num_columns == 0 and table.num_rows == 0
