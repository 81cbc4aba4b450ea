"""`ml.train` on DuckDB: a model trained from DuckDB SQL, embedded and through a real bridge process,
then scored with its typed macro and evaluated with `ml.evaluate` on the same connection.

The churn model is the telco table as it is (text categories, NULL charges) with the bench's
parameters (`{"seed": 7}`, bench/tabular_categoricals.py): its held-out AUC is the bench's, and the
embedded and the bridge's versions are the same model (the same rows, read in different chunks,
give the same data hash and the same predictions).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from sqlml.bridge.client import LocalClient
from sqlml.bridge.http_client import BridgeClient
from sqlml.bridge.registry import Registry
from sqlml.data.tables import load_table
from sqlml.udfs import register, training
from tests.served_bridge import ServedBridge

BENCH_AUC = 0.8665  # README's Models table, bench/tabular_categoricals.py
TOKEN = "duckdb-train-token"
QUICK = '{"n_estimators": 40, "learning_rate": 0.2}'
TRAIN_CHURN = """SELECT ml.train('churn', 'classification', 'SELECT * FROM churn', 'churn', '{"seed": 7}')"""


def _connection(client: LocalClient | BridgeClient, tables: dict[str, pd.DataFrame]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    register(con, client)
    for name, frame in tables.items():
        con.register("frame", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
        con.unregister("frame")
    return con


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return load_table("telco_churn")


@pytest.fixture
def jobs_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "jobs" / "jobs.sqlite"
    monkeypatch.setenv("SQLML_JOBS_DB", str(path))
    return path


@pytest.fixture
def embedded(tmp_path: Path, jobs_db: Path) -> LocalClient:
    return LocalClient(Registry(tmp_path / "models"))


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`sqlml serve` in its own home, with the job routes and a token with every scope."""
    home = tmp_path_factory.mktemp("train-bridge")
    port = _free_port()
    command = [str(Path(sys.executable).parent / "sqlml"), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--store", str(home / "models")]  # fmt: skip
    env = {**os.environ, "SQLML_HOME": str(home), "SQLML_TOKENS": json.dumps({TOKEN: ["admin"]})}
    env.pop("SQLML_JOBS_DB", None)
    served = ServedBridge(command, f"http://127.0.0.1:{port}", home / "bridge.log", env)
    try:
        served.wait_ready()
        yield served.url
    finally:
        served.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _job(con: duckdb.DuckDBPyConnection, job_id: str, timeout_s: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        cursor = con.execute("SELECT * FROM ml.job(?)", [job_id])
        names = [d[0] for d in cursor.description or []]
        row = dict(zip(names, cursor.fetchone() or (), strict=True))
        if row["state"] not in ("queued", "running"):
            return row
        assert time.monotonic() < deadline, f"job {job_id} still {row['state']}"
        time.sleep(0.3)


def _scores(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return con.execute(
        "SELECT customer_id, (ml.churn(c)).label, (ml.churn(c)).probability FROM churn c ORDER BY customer_id"
    ).fetchall()


def _auc(truth: list[bool], scores: list[float]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth, scores))


# -- the churn model, embedded and through a bridge ------------------------------------------------


@pytest.fixture
def embedded_churn(embedded: LocalClient, churn: pd.DataFrame) -> tuple[duckdb.DuckDBPyConnection, str]:
    con = _connection(embedded, {"churn": churn})
    job_id = con.execute(TRAIN_CHURN).fetchone()[0]  # type: ignore[index]
    return con, str(job_id)


def test_embedded_training_runs_here_and_the_typed_macro_scores_at_once(
    embedded_churn: tuple[duckdb.DuckDBPyConnection, str], embedded: LocalClient, churn: pd.DataFrame
) -> None:
    con, job_id = embedded_churn
    job = _job(con, job_id, timeout_s=0)
    assert (job["state"], job["version"], job["promoted"], job["model"], job["task"]) == (
        "succeeded", 1, True, "churn", "classification",
    )  # fmt: skip
    assert job["metrics"]["auc"] == pytest.approx(BENCH_AUC, abs=5e-5)  # the bench's split, parameters, AUC
    assert job["progress"] == 1.0 and job["finished_at"] >= job["created_at"]
    scored = _scores(con)
    assert len(scored) == len(churn) and {label for _id, label, _p in scored} == {"Yes", "No"}
    lineage = embedded.describe("churn").lineage
    assert (lineage["rows"], lineage["source"], lineage["target"]) == (len(churn), "duckdb database memory", "churn")
    assert [r[0] for r in con.execute("SELECT id FROM ml.jobs()").fetchall()] == [job_id]
    assert con.execute("SELECT * FROM ml.sync()").fetchall() == [("churn", "ml.churn", "unchanged")]
    assert "published churn version 1" in Path(_log_path(job_id)).read_text()


def _log_path(job_id: str) -> str:
    from sqlml.bridge.jobs.store import JobStore

    return JobStore(os.environ["SQLML_JOBS_DB"]).get(job_id).log_path


@pytest.mark.bridge
def test_through_a_bridge_the_job_runs_there_and_gives_the_same_model(
    embedded_churn: tuple[duckdb.DuckDBPyConnection, str],
    embedded: LocalClient,
    bridge: str,
    churn: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(training, "CHUNK_ROWS", 1000)  # 8 uploads of rows, not one
    client = BridgeClient(bridge, token=TOKEN, timeout=60)
    con = _connection(client, {"churn": churn})
    job_id = con.execute(TRAIN_CHURN).fetchone()[0]  # type: ignore[index]
    job = _job(con, str(job_id))
    assert job["state"] == "succeeded", job["error"]
    assert job["backend"] == "local" and job["metrics"]["auc"] == pytest.approx(BENCH_AUC, abs=5e-5)
    # ml.job saw it succeed: the typed macro is there, and it is the embedded model's twin
    through_bridge, here = _scores(con), _scores(embedded_churn[0])
    assert [r[:2] for r in through_bridge] == [r[:2] for r in here]
    assert [r[2] for r in through_bridge] == pytest.approx([r[2] for r in here], rel=1e-6)
    theirs, ours = client.describe("churn"), embedded.describe("churn")
    assert theirs.lineage["data_sha256"] == ours.lineage["data_sha256"]
    assert theirs.metrics["auc"] == ours.metrics["auc"]
    # the held-out AUC of the scores equals the job's metric on the same rows' scores
    truth = [c == "Yes" for c in churn.sort_values("customer_id")["churn"]]
    assert _auc(truth, [r[2] for r in through_bridge]) > 0.85
    assert job_id in [r[0] for r in con.execute("SELECT id FROM ml.jobs()").fetchall()]


# -- multiclass and regression, evaluated --------------------------------------------------------


def test_a_multiclass_model_from_duckdb_sql_scores_and_evaluates(embedded: LocalClient) -> None:
    penguins = load_table("penguins").sample(frac=1.0, random_state=1).reset_index(drop=True)
    penguins["part"] = np.where(penguins["penguin_id"] % 4 == 0, "test", "train")
    con = _connection(embedded, {"penguins": penguins})
    con.execute(
        "SELECT ml.train('penguin_species', 'classification', 'SELECT island, bill_length_mm, bill_depth_mm, "
        "flipper_length_mm, body_mass_g, sex, species FROM penguins WHERE part = ''train''', 'species', ?)",
        [QUICK],
    )
    scored = con.execute(
        "SELECT species, (ml.penguin_species(p)).label, (ml.penguin_species(p)).p_gentoo "
        "FROM penguins p WHERE part = 'test' ORDER BY penguin_id"
    ).fetchall()
    assert all(label in ("Adelie", "Chinstrap", "Gentoo") and 0.0 <= p <= 1.0 for _s, label, p in scored)
    evaluated = dict(
        con.execute(
            "SELECT metric, value FROM ml.evaluate('penguin_species', 'SELECT * FROM penguins WHERE part = ''test''')"
        ).fetchall()
    )
    accuracy = np.mean([truth == label for truth, label, _p in scored])
    assert evaluated["rows"] == len(scored) and evaluated["accuracy"] == pytest.approx(accuracy)
    assert accuracy > 0.9
    with pytest.raises(duckdb.Error, match='no row has a value of "species"'):  # as on PostgreSQL, not no rows
        con.execute("SELECT * FROM ml.evaluate('penguin_species', 'SELECT * FROM penguins WHERE false')")


def test_a_regression_from_duckdb_sql_with_named_arguments(embedded: LocalClient) -> None:
    houses = load_table("ames")
    con = _connection(embedded, {"houses": houses})
    job_id = con.execute(
        "SELECT ml.train(model := 'house_price', task := 'regression', target := 'sale_price', "
        "query := 'SELECT * FROM houses WHERE house_id <= 2400', params := ?::JSON, promote := 'always')",
        [QUICK],
    ).fetchone()[0]  # type: ignore[index]
    metrics = _job(con, str(job_id))["metrics"]
    assert metrics["rmse"] < 0.5 * metrics["baseline_rmse"]
    scored = con.execute("SELECT sale_price, ml.house_price(h) FROM houses h WHERE house_id > 2400").fetchall()
    rmse = float(np.sqrt(np.mean([(truth - p) ** 2 for truth, p in scored])))
    evaluated = dict(
        con.execute("SELECT * FROM ml.evaluate('house_price', 'SELECT * FROM houses WHERE house_id > 2400')").fetchall()
    )
    assert evaluated["rows"] == len(scored) == 530
    assert evaluated["rmse"] == pytest.approx(rmse, rel=1e-6)


def test_a_daily_forecast_from_duckdb_sql_gets_its_table_macro(embedded: LocalClient) -> None:
    days = pd.date_range("2021-01-01", periods=500, freq="D")
    rng = np.random.default_rng(5)
    sales = pd.DataFrame(
        {
            "day": days,
            "store": "north",
            "sold": 50 + 10 * np.sin(np.arange(500) * 2 * np.pi / 7) + rng.normal(0, 1, 500),
        }
    )
    con = _connection(embedded, {"sales": sales})
    con.execute(
        "SELECT ml.train('daily_sales', 'forecast', 'SELECT day, store, sold FROM sales', 'sold', "
        """'{"time_column": "day", "series_column": "store", "n_estimators": 5, "max_depth": 2}')"""
    )
    rows = con.execute(
        "SELECT ts, value FROM ml.daily_sales(horizon := 7, quantiles := ['p50']) ORDER BY ts"
    ).fetchall()
    assert [ts for ts, _v in rows] == list(pd.date_range("2022-05-16", periods=7, freq="D").to_pydatetime())
    assert all(30 < value < 70 for _ts, value in rows)


# -- clear errors, before any job ------------------------------------------------------------------


@pytest.fixture
def tiny(embedded: LocalClient) -> duckdb.DuckDBPyConnection:
    frame = pd.DataFrame({"note": ["a", "b"] * 15, "y": ["yes", "no"] * 15, "v": range(30)})
    return _connection(embedded, {"tiny": frame})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("'t', 'clustering', 'SELECT * FROM tiny', 'y'", "unknown task 'clustering'"),
        ("'t', 'classification', 'SELECT * FROM tiny', 'why'", 'the query has no column "why" \\(the target\\)'),
        ("'t', 'classification', 'SELECT * FROM tiny', 'y', '{\"n_estimators\": 3'", "params is not valid JSON"),
        ("'t', 'classification', 'SELECT * FROM tiny', 'y', '[1, 2]'", "params must be a JSON object"),
        (
            "'t', 'classification', 'SELECT * FROM tiny', 'y', '{\"algorithm\": \"xgboost\"}'",
            "unknown training parameter: 'algorithm'",
        ),
        ("'t', 'regression', 'SELECT * FROM tiny', 'y'", "regression needs a numeric target"),
        ("'t', 'classification', 'SELECT * FROM nowhere', 'y'", "the training query failed: Catalog Error"),
        ("'t', 'classification', 'SELECT * FROM tiny; DROP TABLE tiny', 'y'", "must be one SELECT statement"),
        ("'t', 'classification', 'SELECT * FROM tiny WHERE v < 0', 'y'", "the training query returned no rows"),
        ("'t', 'classification', 'SELECT * FROM tiny', 'y', backend := 'spark'", "invalid job spec: backend"),
        ("'t', 'classification', NULL, 'y'", "query must not be NULL"),
    ],
)
def test_bad_calls_fail_with_a_clear_error_and_train_nothing(
    tiny: duckdb.DuckDBPyConnection, embedded: LocalClient, call: str, message: str
) -> None:
    with pytest.raises(duckdb.Error, match=message):
        tiny.execute(f"SELECT ml.train({call})")
    assert embedded.models() == []
    assert tiny.execute("SELECT count(*) FROM tiny").fetchone() == (30,)


def test_the_query_runs_on_its_own_cursor_and_says_what_it_cannot_see(tiny: duckdb.DuckDBPyConnection) -> None:
    tiny.execute("CREATE TEMP TABLE scratch AS SELECT * FROM tiny")
    with pytest.raises(duckdb.Error, match="not TEMP tables"):
        tiny.execute("SELECT ml.train('t', 'classification', 'SELECT * FROM scratch', 'y')")
    tiny.execute("CREATE SCHEMA crm")
    tiny.execute("CREATE TABLE crm.leads AS SELECT * FROM tiny")
    tiny.execute("USE crm")  # the caller's schema is the cursor's
    job_id = tiny.execute(
        "SELECT ml.train('t', 'classification', 'SELECT note, y FROM leads', 'y', '{\"n_estimators\": 3}')"
    ).fetchone()[0]  # type: ignore[index]
    assert tiny.execute("SELECT state FROM ml.job(?)", [job_id]).fetchone() == ("succeeded",)


def test_a_failed_job_is_an_error_naming_it_and_recorded(tiny: duckdb.DuckDBPyConnection) -> None:
    frame = pd.DataFrame({"v": [i % 5 for i in range(30)], "y": ["yes"] * 30})  # one class: only the full data shows it
    tiny.register("frame", frame)
    tiny.execute("CREATE TABLE one_class AS SELECT * FROM frame")
    with pytest.raises(duckdb.Error, match=r"training job \w+ failed: .*single class"):
        tiny.execute("SELECT ml.train('t', 'classification', 'SELECT * FROM one_class', 'y')")
    [(state, error)] = tiny.execute("SELECT state, error FROM ml.jobs()").fetchall()
    assert state == "failed" and "single class" in error
    with pytest.raises(duckdb.Error, match='training job "nope" not found'):
        tiny.execute("SELECT * FROM ml.job('nope')")


@pytest.mark.bridge
def test_the_ray_backend_through_a_bridge(bridge: str) -> None:
    """`backend := 'ray'`: the bridge's worker starts a private Ray and fits XGBoost with Ray Train."""
    penguins = load_table("penguins")
    con = _connection(BridgeClient(bridge, token=TOKEN, timeout=60), {"penguins": penguins})
    job_id = con.execute(
        "SELECT ml.train('penguins_ray', 'classification', 'SELECT * EXCLUDE (penguin_id) FROM penguins', 'species', "
        """'{"n_estimators": 5}', backend := 'ray')"""
    ).fetchone()[0]  # type: ignore[index]
    job = _job(con, str(job_id), timeout_s=300)
    assert (job["state"], job["backend"]) == ("succeeded", "ray"), job["error"]
    assert job["metrics"]["accuracy"] > job["metrics"]["baseline_accuracy"] and job["metrics"]["workers"] == 1.0
    labels = con.execute("SELECT (ml.penguins_ray(p)).label FROM penguins p").fetchall()
    assert len(labels) == len(penguins) and {label for (label,) in labels} <= {"Adelie", "Chinstrap", "Gentoo"}
