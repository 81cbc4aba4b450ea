"""Fixtures for the rewriter tests: a hand-built catalog, and a scratch PostgreSQL database with
a pure-SQL stand-in for the extension's functions (standin.sql) and small demo tables, so that
original and rewritten queries can be executed and their rows compared without the bridge."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sqlml.sql.catalog import PREDICT, SENTIMENT, Catalog, ModelFunction, SqlColumn

HERE = Path(__file__).parent
ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"

LEAD_SCORE = ModelFunction(
    name="lead_score",
    kind="typed",
    inputs=(SqlColumn("mostype", "bigint"), SqlColumn("maanthui", "bigint"), SqlColumn("mgemomv", "bigint")),
    outputs=(SqlColumn("probability", "double precision"),),
    model="lead_score",
)
LEAD_NULLS = ModelFunction(
    name="lead_nulls",
    kind="typed",
    inputs=LEAD_SCORE.inputs,
    outputs=LEAD_SCORE.outputs,
    model="lead_nulls",
    strict=False,
)
CHURN = ModelFunction(
    name="churn",
    kind="typed",
    inputs=(SqlColumn("tenure", "bigint"), SqlColumn("plan", "text")),
    outputs=(SqlColumn("churned", "boolean"), SqlColumn("probability", "double precision")),
    result_type="ml.churn_result",
    model="churn",
)


def demo_catalog() -> Catalog:
    return Catalog.of(SENTIMENT, PREDICT, LEAD_SCORE, CHURN, LEAD_NULLS)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return demo_catalog()


@pytest.fixture(scope="session")
def standin_dsn() -> Iterator[str]:
    """A scratch database `sqlml_rw_<random>` with the stand-in functions and demo tables."""
    import psycopg

    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True)
    except psycopg.OperationalError as error:
        pytest.fail(f"these tests need PostgreSQL on 127.0.0.1:5432 ({error})")
    name = f"sqlml_rw_{secrets.token_hex(4)}"
    admin.execute(f"CREATE DATABASE {name}")
    dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={name} connect_timeout=3"
    try:
        with psycopg.connect(dsn, autocommit=True) as setup:
            setup.execute((HERE / "standin.sql").read_text())
            setup.execute((HERE / "demo_tables.sql").read_text())
        yield dsn
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture()
def standin(standin_dsn: str) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(standin_dsn, autocommit=True) as connection:
        yield connection
