"""`evaluate` on rows the model never saw: the HTTP route, DuckDB's `ml.evaluate(model, query)` and the
errors a user gets for rows that cannot be compared.

A churn model trained on the first 5,000 telco customers is evaluated on the other 2,043; a
regression on Ames houses likewise. The metrics are recomputed here with scikit-learn from the
model's own predictions, so the route cannot report numbers of some other rows or model.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import mean_squared_error, roc_auc_score

from sqlml.bridge.app import create_app
from sqlml.bridge.client import LocalClient
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings
from sqlml.bridge.training.tabular import train_tabular
from sqlml.data.tables import load_table
from sqlml.errors import InvalidInput, NotSupported
from sqlml.udfs import register

SPLIT = 5_000


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return load_table("telco_churn")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, churn: pd.DataFrame) -> Registry:
    root = tmp_path_factory.mktemp("evaluate")
    registry = Registry(root / "models")
    for name, frame, target, task in [
        ("churn", churn.iloc[:SPLIT], "churn", "classification"),
        ("houses", load_table("ames").iloc[:2_000], "sale_price", "regression"),
    ]:
        folder = root / name
        folder.mkdir()
        trained = train_tabular(
            pa.Table.from_pandas(frame, preserve_index=False), name=name, target=target, task=task,  # type: ignore[arg-type]
            folder=folder, params={"n_estimators": 40, "learning_rate": 0.2},
        )  # fmt: skip
        registry.publish(trained.manifest, folder, alias="production")
    return registry


def held_out(churn: pd.DataFrame) -> pd.DataFrame:
    return churn.iloc[SPLIT:].reset_index(drop=True)


def test_the_route_reports_the_metrics_of_the_rows_it_was_given(store: Registry, churn: pd.DataFrame) -> None:
    rows = held_out(churn)
    app = create_app(BridgeSettings(store=str(store.root), auth=False))
    with TestClient(app) as http:
        inputs = rows.drop(columns=["customer_id"])
        body = {"rows": inputs.astype(object).where(inputs.notna(), None).to_dict(orient="records")}
        answer = http.post("/v1/models/churn/evaluate", json=body)
        assert answer.status_code == 200, answer.text
        result = answer.json()
        scored = http.post("/v1/models/churn/predict", json={"rows": [
            {k: v for k, v in r.items() if k != "churn"} for r in body["rows"]]}).json()  # fmt: skip
    probabilities = [r["probability"] for r in scored["rows"]]
    assert result["rows"] == len(rows) and result["skipped_rows"] == 0
    truth = (rows["churn"] == "Yes").to_numpy()
    assert result["metrics"]["auc"] == pytest.approx(roc_auc_score(truth, probabilities), abs=1e-9)
    matrix = result["confusion_matrix"]
    assert matrix["labels"] == ["No", "Yes"] and sum(map(sum, matrix["counts"])) == len(rows)
    assert sum(matrix["counts"][1]) == int(truth.sum())  # the "Yes" row holds the churners


def test_duckdb_evaluates_the_rows_of_a_query(store: Registry, churn: pd.DataFrame) -> None:
    con = duckdb.connect()
    register(con, LocalClient(store))
    con.register("frame", held_out(churn))
    con.execute("CREATE TABLE churn_test AS SELECT * FROM frame")
    rows = dict(con.sql("SELECT metric, value FROM ml.evaluate('churn', 'SELECT * FROM churn_test')").fetchall())
    assert rows["rows"] == len(held_out(churn)) and 0.75 < rows["auc"] < 1.0
    assert sum(v for k, v in rows.items() if k.startswith("confusion:")) == rows["rows"]
    half = dict(con.sql("SELECT * FROM ml.evaluate('churn', 'SELECT * FROM churn_test WHERE tenure < 12')").fetchall())
    assert half["rows"] == con.execute("SELECT count(*) FROM churn_test WHERE tenure < 12").fetchall()[0][0]


def test_regression_is_measured_against_its_targets(store: Registry) -> None:
    houses = load_table("ames").iloc[2_000:].reset_index(drop=True)
    client = LocalClient(store)
    table = pa.Table.from_pandas(houses.drop(columns=["house_id"]), preserve_index=False)
    result = client.evaluate("houses", table)
    predicted = client.predict("houses", table.drop_columns(["sale_price"])).column("value").to_numpy()
    rmse = float(np.sqrt(mean_squared_error(houses["sale_price"], predicted)))
    assert result["metrics"]["rmse"] == pytest.approx(rmse, rel=1e-9)
    assert "confusion_matrix" not in result


def test_rows_with_a_null_target_are_skipped_and_counted(store: Registry, churn: pd.DataFrame) -> None:
    rows = held_out(churn).head(50).drop(columns=["customer_id"])
    rows.loc[:9, "churn"] = pd.NA
    result = LocalClient(store).evaluate("churn", pa.Table.from_pandas(rows, preserve_index=False))
    assert (result["rows"], result["skipped_rows"]) == (40, 10)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no target", 'no target column "churn"'),
        ("unknown label", "target values the model does not know: 'Maybe'"),
        ("all null", 'no row has a value of "churn"'),
    ],
)
def test_rows_that_cannot_be_compared_say_why(store: Registry, churn: pd.DataFrame, change: str, message: str) -> None:
    rows = held_out(churn).head(20).drop(columns=["customer_id"])
    if change == "no target":
        rows = rows.drop(columns=["churn"])
    elif change == "unknown label":
        rows.loc[3, "churn"] = "Maybe"
    else:
        rows["churn"] = pd.Series([pd.NA] * len(rows), dtype="string")
    with pytest.raises(InvalidInput, match=message):
        LocalClient(store).evaluate("churn", pa.Table.from_pandas(rows, preserve_index=False))


def test_a_model_that_is_not_tabular_cannot_be_evaluated(tmp_path: Path) -> None:
    from tests.udfs.fakes import publish_fakes

    registry = Registry(tmp_path / "models")
    publish_fakes(registry, tmp_path, ("sentiment",))
    with pytest.raises(NotSupported, match="cannot be evaluated"):
        LocalClient(registry).evaluate("sentiment", pa.table({"text": ["fine"], "label": ["positive"]}))


def test_the_route_answers_malformed_targets_with_a_client_error(store: Registry, churn: pd.DataFrame) -> None:
    app = create_app(BridgeSettings(store=str(store.root), auth=False))
    row = held_out(churn).drop(columns=["customer_id", "churn"]).head(2)
    rows = row.astype(object).where(row.notna(), None).to_dict(orient="records")
    with TestClient(app) as http:
        mixed = http.post(
            "/v1/models/churn/evaluate", json={"rows": [{**rows[0], "churn": "Yes"}, {**rows[1], "churn": 3}]}
        )
        missing = http.post("/v1/models/churn/evaluate", json={"rows": rows})
    assert mixed.status_code == 422 and "one type" in mixed.json()["error"]["message"]
    assert missing.status_code == 422 and 'no target column "churn"' in missing.json()["error"]["message"]
