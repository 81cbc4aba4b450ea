"""The same model trained from SQL on PostgreSQL and on DuckDB, and scored through its typed function.

The telco churn table as it is (text categories, NULL charges) is loaded into both engines; each
engine's `ml.train` sends its rows to the same real bridge with the bench's parameters, and the two
versions are the same model: the same data hash, the same held-out AUC (the bench's 0.8665) and
the same score for every customer, read through `ml.<model>(c)` on each engine.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd
import psycopg
import pytest

from sqlml.bridge.http_client import BridgeClient
from sqlml.data.tables import load_table
from sqlml.udfs import register
from tests.training.sql_jobs import poll_job

from .conftest import ADMIN_TOKEN

pytestmark = pytest.mark.postgres

# The seeded split is by row position, and a PostgreSQL heap does not keep a table's load order
# (470 of the 7,043 rows come back elsewhere): ORDER BY gives both engines the same rows in the same order.
TRAIN = (
    "SELECT ml.train('{model}', 'classification', 'SELECT * FROM churn_parity ORDER BY customer_id', 'churn', "
    "'{{\"seed\": 7}}')"
)
SCORES = (
    "SELECT customer_id, (ml.{model}(c)).label, (ml.{model}(c)).probability FROM churn_parity c ORDER BY customer_id"
)


def _load(conn: psycopg.Connection[Any], frame: pd.DataFrame) -> None:
    def sql_type(dtype: Any) -> str:
        text = str(dtype)
        return "bigint" if text.startswith("int") else "double precision" if text.startswith("float") else "text"

    conn.execute("DROP TABLE IF EXISTS churn_parity")
    conn.execute(f"CREATE TABLE churn_parity ({', '.join(f'{c} {sql_type(t)}' for c, t in frame.dtypes.items())})")  # type: ignore[arg-type]
    with conn.cursor().copy(f"COPY churn_parity ({', '.join(frame.columns)}) FROM STDIN") as copy:  # type: ignore[arg-type]
        for row in frame.astype(object).where(frame.notna(), None).itertuples(index=False):
            copy.write_row(list(row))


def test_postgres_and_duckdb_train_the_same_model_from_the_same_sql(conn: psycopg.Connection, bridge_url: str) -> None:
    frame = load_table("telco_churn")
    _load(conn, frame)
    conn.execute("SET sqlml.timeout_ms = 30000")
    pg_job = conn.execute(TRAIN.format(model="churn_pg")).fetchone()[0]  # type: ignore[index]
    state, _version, _promoted, pg_metrics, error = poll_job(conn, pg_job, timeout_s=180)
    assert state == "succeeded", error
    conn.execute("SELECT * FROM ml.sync()")

    client = BridgeClient(bridge_url, token=ADMIN_TOKEN, timeout=60)
    duck = duckdb.connect()
    register(duck, client)
    duck.register("frame", frame)
    duck.execute("CREATE TABLE churn_parity AS SELECT * FROM frame")
    duck_job = duck.execute(TRAIN.format(model="churn_duck")).fetchone()[0]  # type: ignore[index]
    [(duck_state, duck_metrics, duck_error)] = _wait(duck, duck_job)
    assert duck_state == "succeeded", duck_error

    assert pg_metrics["auc"] == duck_metrics["auc"] == pytest.approx(0.8665, abs=5e-5)
    pg_model, duck_model = client.describe("churn_pg"), client.describe("churn_duck")
    assert pg_model.lineage["data_sha256"] == duck_model.lineage["data_sha256"]
    assert pg_model.signature == duck_model.signature
    in_postgres = conn.execute(SCORES.format(model="churn_pg")).fetchall()
    in_duckdb = duck.execute(SCORES.format(model="churn_duck")).fetchall()  # ml.job made the macro
    assert len(in_duckdb) == len(in_postgres) == len(frame)
    assert [r[:2] for r in in_duckdb] == [r[:2] for r in in_postgres]
    assert [r[2] for r in in_duckdb] == pytest.approx([r[2] for r in in_postgres], rel=1e-6)


def _wait(con: duckdb.DuckDBPyConnection, job_id: str, timeout_s: float = 180.0) -> list[tuple[Any, ...]]:
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        rows = con.execute("SELECT state, metrics, error FROM ml.job(?)", [job_id]).fetchall()
        if rows[0][0] not in ("queued", "running"):
            return rows
        assert time.monotonic() < deadline, f"job {job_id} still {rows[0][0]}"
        time.sleep(0.3)
