"""conform(): a batch comes out with exactly the signature's columns, in order, at its types."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sqlml.bridge.signature import conform
from sqlml.errors import InvalidInput

from .conftest import sum_manifest


def test_a_batch_that_already_conforms_is_returned_as_it_is() -> None:
    batch = pa.table({"a": pa.array([1.5], pa.float64()), "b": pa.array([2], pa.int64())})
    assert conform(sum_manifest(), batch) is batch


def test_columns_are_put_in_signature_order_and_cast() -> None:
    batch = pa.table({"b": pa.array([2, 3], pa.int32()), "a": pa.array([1, 4], pa.int64())})
    out = conform(sum_manifest(), batch)
    assert out.schema == pa.schema([("a", pa.float64()), ("b", pa.int64())])
    assert out.to_pylist() == [{"a": 1.0, "b": 2}, {"a": 4.0, "b": 3}]


def test_a_wrong_type_or_an_extra_column_is_refused() -> None:
    with pytest.raises(InvalidInput, match='column "a" of model "adder" must be a number, got text'):
        conform(sum_manifest(), pa.table({"a": ["x"], "b": [1]}))
    with pytest.raises(InvalidInput, match='model "adder" has no input column "c"'):
        conform(sum_manifest(), pa.table({"a": [1.0], "b": [1], "c": [0]}))
