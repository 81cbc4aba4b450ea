"""Strict input typing at the bridge: only lossless conversions pass, for JSON and Arrow alike; a
batch is accepted and scored exactly as its rows would be one by one; a row with none of the inputs
is an error, a row with some of them NULL or missing is NULL in, NULL out."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlml.bridge.app import create_app
from sqlml.bridge.manifest import Column, Manifest, Signature
from sqlml.bridge.registry import Registry
from sqlml.bridge.runtimes import register_runtime
from sqlml.bridge.runtimes.base import Runtime
from sqlml.bridge.settings import BridgeSettings
from sqlml.bridge.signature import conform
from sqlml.bridge.wire import ARROW_STREAM, write_ipc
from sqlml.errors import InvalidInput

INPUTS = {"n": "bigint", "x": "double", "t": "text", "f": "boolean", "w": "timestamp"}
AUTH = {"Authorization": "Bearer admin-token"}


class IdentityRuntime(Runtime):
    """Answers its conformed inputs, so a test sees exactly the values the model would get."""

    name = "strictness_identity"

    def load(self) -> None:
        pass

    def predict(self, batch: pa.Table) -> pa.Table:
        return batch.rename_columns([f"{name}_out" for name in batch.column_names])


register_runtime(IdentityRuntime.name, IdentityRuntime)

MANIFEST = Manifest(
    name="identity",
    runtime=IdentityRuntime.name,
    task="regression",
    signature=Signature(
        inputs=[Column(name=n, type=t) for n, t in INPUTS.items()],  # type: ignore[arg-type]
        outputs=[Column(name=f"{n}_out", type=t) for n, t in INPUTS.items()],  # type: ignore[arg-type]
    ),
)


@pytest.fixture(scope="module")
def http() -> Iterator[TestClient]:
    store = tempfile.mkdtemp(prefix="sqlml-strict-")
    with tempfile.TemporaryDirectory() as artifact:
        Registry(store).publish(MANIFEST, artifact)
    settings = BridgeSettings.model_validate({"store": store, "tokens": {"admin-token": ["admin"]}})
    with TestClient(create_app(settings), headers=AUTH, raise_server_exceptions=False) as client:
        yield client


def predict(http: TestClient, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = http.post("/v1/models/identity/predict", json=body)
    return response.status_code, response.json()


def error_of(http: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = predict(http, body)
    assert status == 422, answer
    error: dict[str, Any] = answer["error"]
    assert error["code"] == "invalid_input"
    return error


FULL = {"n": 1, "x": 1.5, "t": "a", "f": True, "w": "2026-11-26T10:00:00"}


# -- examples --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["rows", "columns"])
@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [("n", 3.7, "3.7"), ("n", True, "true"), ("x", False, "false"), ("t", 5, "5"), ("w", 0, "0"), ("f", 1, "1")],
)
def test_a_value_that_does_not_fit_is_named_with_its_column_and_row(
    http: TestClient, shape: str, column: str, value: Any, shown: str
) -> None:
    rows = [FULL, FULL, {**FULL, column: value}]
    body = {"rows": rows} if shape == "rows" else {"columns": {k: [r[k] for r in rows] for k in INPUTS}}
    error = error_of(http, body)
    assert error["message"].startswith(f'column "{column}" must be ')
    assert error["message"].endswith(f", got {shown} at row 2")
    assert error["detail"]["column"] == column and error["detail"]["row"] == 2


def test_integral_floats_feed_a_bigint_and_integers_a_double(http: TestClient) -> None:
    status, answer = predict(http, {"rows": [{**FULL, "n": 3.0, "x": 2}, {**FULL, "n": -0.0, "x": -7}]})
    assert status == 200, answer
    assert [(r["n_out"], r["x_out"]) for r in answer["rows"]] == [(3, 2.0), (0, -7.0)]


@pytest.mark.parametrize("row", [{}, {"unrelated": 1}, {"N": 1, "X": 2.0}])
def test_a_row_with_none_of_the_inputs_is_an_error_naming_them(http: TestClient, row: dict[str, Any]) -> None:
    error = error_of(http, {"rows": [FULL, row]})
    assert error["message"] == 'row 1 is missing every input column: "n", "x", "t", "f", "w"'
    assert error["detail"]["missing"] == list(INPUTS) and error["detail"]["row"] == 1
    if row:
        assert error["hint"].startswith("the row has only ")


def test_a_row_with_some_inputs_null_or_missing_scores_null(http: TestClient) -> None:
    status, answer = predict(http, {"rows": [FULL, {"n": 2}, {"n": None, "x": None}, {k: None for k in INPUTS}]})
    assert status == 200, answer
    assert answer["rows"][0]["n_out"] == 1
    assert all(value is None for row in answer["rows"][1:] for value in row.values())


def test_a_key_that_is_no_input_is_still_refused_by_name(http: TestClient) -> None:
    error = error_of(http, {"rows": [{**FULL, "extra": 1}]})
    assert error["message"] == 'model "identity" has no input column "extra"'


def arrow_error(http: TestClient, table: pa.Table) -> dict[str, Any]:
    response = http.post(
        "/v1/models/identity/predict",
        content=write_ipc(table),
        headers={"Content-Type": ARROW_STREAM, "Accept": "application/json"},
    )
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def arrow_batch(**overrides: pa.Array) -> pa.Table:
    rows = 3
    columns = {
        "n": pa.array([1] * rows, pa.int64()),
        "x": pa.array([1.5] * rows),
        "t": pa.array(["a"] * rows),
        "f": pa.array([True] * rows),
        "w": pa.array(["2026-11-26T10:00:00"] * rows),
    }
    return pa.table({**columns, **overrides})


def test_arrow_batches_follow_the_same_rules(http: TestClient) -> None:
    error = arrow_error(http, arrow_batch(n=pa.array([1.0, 3.0, 3.7])))
    assert error["message"] == 'column "n" of model "identity" must be an integer, got 3.7 at row 2'
    assert error["detail"]["row"] == 2
    error = arrow_error(http, arrow_batch(n=pa.array([True, False, True])))
    assert error["message"] == 'column "n" of model "identity" must be an integer, got boolean'
    error = arrow_error(http, arrow_batch(t=pa.array([1, 2, 3])))
    assert error["message"] == 'column "t" of model "identity" must be text, got integer'
    fine = conform(MANIFEST, arrow_batch(n=pa.array([1.0, 3.0, -0.0]), x=pa.array([1, 2, 3], pa.int32())))
    assert fine.column("n").to_pylist() == [1, 3, 0] and fine.column("x").type == pa.float64()


# -- a batch behaves exactly like its rows one by one ----------------------------------------

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([3.0, 3.7, -0.0, 2.0**53, 2.0**63, 1e20, 0.5]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(alphabet="ab", max_size=3),
    st.sampled_from(["2026-11-26T10:00:00", "2026-11-26 10:00:00", "not a time"]),
    st.just([1]),
    st.just({"k": 1}),
)
ROW = st.fixed_dictionaries({}, optional={**dict.fromkeys(INPUTS, VALUES), "extra": VALUES})
ROWS = st.lists(ROW, min_size=1, max_size=5)


def _as_body(rows: list[dict[str, Any]], shape: str) -> dict[str, Any]:
    if shape == "rows":
        return {"rows": rows}
    names = dict.fromkeys(k for row in rows for k in row)
    return {"columns": {name: [row.get(name) for row in rows] for name in names}}


def _one_by_one(http: TestClient, rows: list[dict[str, Any]], shape: str) -> list[tuple[int, dict[str, Any]]]:
    if shape == "columns":  # a row of a columns batch: each column's value, NULL where a row lacks it
        names = dict.fromkeys(k for row in rows for k in row)
        rows = [{name: row.get(name) for name in names} for row in rows]
    return [predict(http, _as_body([row], shape)) for row in rows]


@pytest.mark.parametrize("shape", ["rows", "columns"])
def test_a_batch_is_accepted_and_scored_exactly_as_its_rows_one_by_one(http: TestClient, shape: str) -> None:
    @given(rows=ROWS)
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    def check(rows: list[dict[str, Any]]) -> None:
        status, answer = predict(http, _as_body(rows, shape))
        singles = _one_by_one(http, rows, shape)
        rejected = [i for i, (single_status, _) in enumerate(singles) if single_status != 200]
        assert all(singles[i][0] == 422 for i in rejected), singles
        if not rejected:
            assert status == 200, answer
            assert answer[shape] == _merged([single for _, single in singles], shape)
            return
        assert status == 422, answer
        error = answer["error"]
        assert error["code"] == "invalid_input"
        keys = {k for row in rows for k in row}
        if "extra" in keys or (shape == "columns" and keys != set(INPUTS)):
            return  # an extra or missing column fails the whole batch (conform names it), whichever its row
        first = rejected[0]
        alone = singles[first][1]["error"]
        assert error["detail"] == {**alone["detail"], "row": first}
        assert error["message"] == alone["message"].replace("row 0", f"row {first}")

    check()


def _merged(answers: list[dict[str, Any]], shape: str) -> Any:
    if shape == "rows":
        return [row for answer in answers for row in answer["rows"]]
    names = answers[0]["columns"]
    return {name: [value for answer in answers for value in answer["columns"][name]] for name in names}


FLOATS = st.lists(
    st.one_of(st.none(), st.sampled_from([3.0, 3.7, -0.0, 2.0**63, 1e20]), st.integers(-1000, 1000).map(float)),
    min_size=1,
    max_size=8,
)


@given(values=FLOATS)
@settings(max_examples=100, deadline=None)
def test_an_arrow_batch_fails_at_the_first_row_that_fails_alone(values: list[float | None]) -> None:
    others = {k: [FULL[k]] * len(values) for k in INPUTS if k != "n"}
    table = pa.table({"n": pa.array(values, pa.float64()), **others})  # a float column for a bigint input
    failing = []
    for row in range(len(values)):
        try:
            conform(MANIFEST, table.slice(row, 1))
        except InvalidInput:
            failing.append(row)
    if not failing:
        assert conform(MANIFEST, table).column("n").to_pylist() == [None if v is None else int(v) for v in values]
        return
    with pytest.raises(InvalidInput) as caught:
        conform(MANIFEST, table)
    assert caught.value.detail["row"] == failing[0]
