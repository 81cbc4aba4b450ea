"""A model trained on a user's own table, in SQL on both engines: text categories as text
parameters, NULL features scored as missing, and the same numbers from the same SQL text.

The model is the telco churn classifier (`train_tabular` on public data with 10 text columns and
NULL charges), published into the test bridge's store; PostgreSQL reaches it through `ml.sync()`'s
generated functions and the bridge, DuckDB in process (embedded) over the same store.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
import pyarrow as pa
import pytest

from sqlml.bridge.client import LocalClient
from sqlml.bridge.registry import Registry
from sqlml.bridge.training.tabular import train_tabular
from sqlml.data.tables import load_table
from sqlml.sql.catalog import Catalog
from sqlml.sql.rewrite import rewrite
from sqlml.udfs import register

pytestmark = pytest.mark.postgres

SCORED_ROWS = 200
ROW_FORM = "SELECT customer_id, ml.{m}(c) AS s FROM churn_customers c ORDER BY customer_id"


@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    frame = load_table("telco_churn")
    frame.loc[frame.index[:5], "contract"] = pd.NA  # unknown fields must still be scored
    frame.loc[frame.index[5:8], "payment_method"] = "Carrier pigeon"  # never seen at training
    return frame


@pytest.fixture
def churn_model(customers: pd.DataFrame, bridge_store: Registry, tmp_path: Path) -> str:
    name = f"churn_{uuid.uuid4().hex[:6]}"
    folder = tmp_path / name
    folder.mkdir()
    trained = train_tabular(
        pa.Table.from_pandas(customers.iloc[SCORED_ROWS:], preserve_index=False), name=name, target="churn",
        task="classification", folder=folder, params={"n_estimators": 30, "learning_rate": 0.3},
    )  # fmt: skip
    bridge_store.publish(trained.manifest, folder, alias="production")
    return name


@pytest.fixture
def churn_table(conn: psycopg.Connection, customers: pd.DataFrame) -> None:
    head = customers.head(SCORED_ROWS)
    columns = ", ".join(
        f"{c} {'bigint' if str(t).startswith('int') else 'double precision' if str(t).startswith('float') else 'text'}"
        for c, t in head.dtypes.items()
    )
    conn.execute("DROP TABLE IF EXISTS churn_customers")
    conn.execute(f"CREATE TABLE churn_customers ({columns})")
    with conn.cursor().copy(f"COPY churn_customers ({', '.join(head.columns)}) FROM STDIN") as copy:
        for row in head.astype(object).where(head.notna(), None).itertuples(index=False):
            copy.write_row(list(row))


def test_the_generated_function_takes_text_categories_and_scores_nulls(
    conn: psycopg.Connection, churn_model: str, churn_table: None
) -> None:
    conn.execute("SELECT * FROM ml.sync()")
    strict, arguments = conn.execute(
        "SELECT p.proisstrict, pg_get_function_identity_arguments(p.oid) FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname = 'ml' "
        "WHERE p.proname = %s AND p.proargtypes[0] <> 'record'::regtype",
        [churn_model],
    ).fetchone()  # type: ignore[misc]
    assert strict is False
    assert "contract text" in arguments and "total_charges double precision" in arguments
    rows = conn.execute(ROW_FORM.format(m=churn_model)).fetchall()
    assert len(rows) == SCORED_ROWS
    assert all(r[1] is not None and r[1][1:-1] for r in rows)  # every row, NULL contract included, has (label, p)
    nulls = conn.execute(
        f"SELECT (ml.{churn_model}(c)).probability FROM churn_customers c WHERE contract IS NULL"
    ).fetchall()
    assert len(nulls) == 5 and all(0.0 < p < 1.0 for (p,) in nulls)


def test_the_same_sql_text_gives_the_same_numbers_in_duckdb(
    conn: psycopg.Connection, churn_model: str, churn_table: None, bridge_store: Registry, customers: pd.DataFrame
) -> None:
    conn.execute("SELECT * FROM ml.sync()")
    sql = (
        f"SELECT customer_id, (ml.{churn_model}(c)).label AS label, (ml.{churn_model}(c)).probability AS p "
        "FROM churn_customers c ORDER BY customer_id"
    )
    in_postgres = conn.execute(sql).fetchall()
    rewritten = rewrite(sql, Catalog.from_connection(conn))
    assert rewritten.changed, rewritten.reason
    assert conn.execute(rewritten.sql).fetchall() == in_postgres  # batched: the same rows
    duck = duckdb.connect()
    register(duck, LocalClient(Registry(bridge_store.url)))
    duck.register("frame", customers.head(SCORED_ROWS))
    duck.execute("CREATE TABLE churn_customers AS SELECT * FROM frame")
    in_duckdb = duck.execute(sql).fetchall()
    assert [r[:2] for r in in_duckdb] == [r[:2] for r in in_postgres]
    assert [r[2] for r in in_duckdb] == pytest.approx([r[2] for r in in_postgres], rel=1e-6)


def test_unseen_categories_are_counted_by_the_bridge(
    conn: psycopg.Connection, churn_model: str, churn_table: None, bridge_url: str
) -> None:
    import httpx

    conn.execute("SELECT * FROM ml.sync()")
    conn.execute(f"SELECT ml.{churn_model}(c) FROM churn_customers c WHERE payment_method = 'Carrier pigeon'")
    metrics = httpx.get(f"{bridge_url}/metrics", timeout=10).text
    line = next(line for line in metrics.splitlines()
                if line.startswith("sqlml_unseen_categories_total") and churn_model in line)  # fmt: skip
    assert 'feature="payment_method"' in line and float(line.split()[-1]) == 3.0
