"""JSON batches to Arrow: one Arrow call a column when every value has a type its column takes,
else a value at a time, naming the column and row of a value that does not fit."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from sqlml.bridge import signature
from sqlml.bridge.wire import json_to_table
from sqlml.errors import InvalidInput

TYPES = {"a": pa.float64(), "n": pa.int64(), "t": pa.string()}


def test_typed_rows_come_out_in_signature_order_with_missing_keys_null() -> None:
    rows = [{"t": "x", "n": 1, "a": 2}, {"a": 0.5, "n": None, "t": "y"}, {"n": 3, "t": "z"}]
    table, shape = json_to_table(None, rows, TYPES)
    assert shape == "rows"
    assert table.schema == pa.schema(list(TYPES.items()))
    assert table.to_pydict() == {"a": [2.0, 0.5, None], "n": [1, None, 3], "t": ["x", "y", "z"]}


def test_the_one_call_path_and_the_value_at_a_time_path_give_the_same_column() -> None:
    values = [1, 2.5, None, -3]
    fast = signature.column_from_values("a", values, pa.float64())
    slow = signature._checked_values_to_array("a", values, pa.float64())
    assert fast.equals(slow) and fast.to_pylist() == [1.0, 2.5, None, -3.0]


def test_integral_floats_feed_a_bigint_column_exactly() -> None:
    table, _ = json_to_table({"n": [3.0, 2**60 + 1, -0.0], "a": [1, 2, 3], "t": ["x", "y", "z"]}, None, TYPES)
    assert table.column("n").to_pylist() == [3, 2**60 + 1, 0]


def test_a_value_of_another_type_is_named_with_its_column_and_row() -> None:
    rows = [{"a": 1.5, "n": 1, "t": "x"}, {"a": "not a number", "n": 1, "t": "x"}]
    with pytest.raises(InvalidInput, match='column "a" must be a number, got "not a number" at row 1') as caught:
        json_to_table(None, rows, TYPES)
    assert caught.value.detail == {
        "column": "a",
        "expected": "double",
        "got": "string",
        "row": 1,
        "value": '"not a number"',
    }


def test_the_first_row_that_does_not_fit_is_the_error_whatever_its_column() -> None:
    columns = {"a": [1.0, 2.0, True], "n": [1, 2.5, 3], "t": ["x", "y", "z"]}
    with pytest.raises(InvalidInput, match=r'column "n" must be an integer, got 2\.5 at row 1'):
        json_to_table(columns, None, TYPES)


def test_keys_that_are_no_input_are_left_to_conform_as_null_columns() -> None:
    table, _ = json_to_table(None, [{"a": 1, "n": 1, "t": "x", "extra": [1, "mixed"]}], TYPES)
    assert table.column_names == ["a", "n", "t", "extra"] and table.column("extra").null_count == 1


def test_timestamps_given_as_text_are_parsed() -> None:
    table, _ = json_to_table(None, [{"when": "2026-11-26T10:00:00"}], {"when": pa.timestamp("us")})
    assert table.column("when").to_pylist() == [dt.datetime(2026, 11, 26, 10, 0)]


def test_no_rows_is_an_empty_batch_of_the_signature() -> None:
    table, _ = json_to_table(None, [], TYPES)
    assert table.schema == pa.schema(list(TYPES.items())) and table.num_rows == 0


def test_without_types_every_column_is_inferred() -> None:
    table, _ = json_to_table(None, [{"x": 1}, {"y": "z"}])
    assert table.to_pydict() == {"x": [1, None], "y": [None, "z"]}


def test_columns_that_are_all_no_input_keep_their_length_for_conform() -> None:
    table, _ = json_to_table({"extra": [1, 2]}, None, TYPES)
    assert table.column_names == ["extra"] and table.num_rows == 2
