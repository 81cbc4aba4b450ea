"""Fixtures of the training-job tests: a scratch PostgreSQL database with a small leads table and
an ordinary role that may read it, a DuckDB file, a job store and model registry in tmp folders,
and a job manager with the real local launcher (worker subprocesses) whose training root is the
test's tmp folder."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import uvicorn

from sqlml.bridge.app import create_app
from sqlml.bridge.jobs.local import LocalLauncher
from sqlml.bridge.jobs.runner import JobManager, source_rules
from sqlml.bridge.jobs.store import JobStore
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings
from tests.tiny_models import random_bert

from .sql_jobs import BRIDGE_TOKEN

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ray: starts a local Ray cluster (slow on 2 cores)")


def leads_frame(rows: int = 600, seed: int = 3) -> pd.DataFrame:
    """Synthetic leads: a purchase depends on two of five features, so a few trees find it."""
    rng = np.random.default_rng(seed)
    income = rng.integers(0, 10, rows)
    cars = rng.integers(0, 4, rows)
    age = rng.normal(40, 10, rows).round(1)
    noise = rng.normal(0, 1, rows)
    logit = 0.8 * (income - 5) + 1.2 * (cars - 1.5) + noise
    return pd.DataFrame(
        {
            "lead_id": np.arange(1, rows + 1),
            "income": income,
            "cars": cars,
            "age": age,
            "owner": rng.random(rows) < 0.5,
            "visits": rng.integers(0, 20, rows),
            "purchased": logit > 1.0,
        }
    )


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def pg_leads() -> Iterator[str]:
    """DSN of a scratch database `sqlml_train_<random>` holding table `leads`; dropped afterwards."""
    if not _pg_available():
        pytest.fail("these tests need PostgreSQL on 127.0.0.1:5432, which is not reachable")
    import psycopg

    name = f"sqlml_train_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={name}"
    frame = leads_frame()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE leads (lead_id bigint PRIMARY KEY, income integer, cars smallint, age numeric(5,1),"
                " owner boolean, visits integer, purchased boolean)"
            )
            with (
                conn.cursor() as cursor,
                cursor.copy("COPY leads (lead_id, income, cars, age, owner, visits, purchased) FROM STDIN") as copy,
            ):
                for row in frame.to_dict("records"):
                    copy.write_row([int(row["lead_id"]), int(row["income"]), int(row["cars"]), float(row["age"]),
                                    bool(row["owner"]), int(row["visits"]), bool(row["purchased"])])  # fmt: skip
        yield dsn
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pg_reader(pg_leads: str) -> Iterator[str]:
    """DSN of an ordinary LOGIN role `sqlml_reader_<random>` granted SELECT on `leads` of `pg_leads`
    (trust auth: no password). What a DSN source must use: the bridge refuses superusers."""
    import psycopg

    role = f"sqlml_reader_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_leads, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")  # type: ignore[arg-type]
        conn.execute(f"GRANT SELECT ON leads TO {role}")  # type: ignore[arg-type]
    try:
        yield pg_leads.replace("user=postgres", f"user={role}")
    finally:
        with psycopg.connect(pg_leads, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")  # type: ignore[arg-type]
            conn.execute(f"DROP ROLE {role}")  # type: ignore[arg-type]


@pytest.fixture
def duckdb_leads(tmp_path: Path) -> Path:
    import duckdb

    path = tmp_path / "leads.duckdb"
    frame = leads_frame()
    with duckdb.connect(str(path)) as con:
        con.register("frame", frame)
        con.execute("CREATE TABLE leads AS SELECT * FROM frame")
    return path


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


@pytest.fixture
def job_store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs" / "jobs.sqlite")


@pytest.fixture
def manager(job_store: JobStore, registry: Registry, tmp_path: Path) -> Iterator[JobManager]:
    """Jobs may read DuckDB files under the test's tmp folder (`duckdb_leads` is there)."""
    launcher = LocalLauncher(job_store, registry.url, grace_s=5.0, train_roots=[str(tmp_path)])
    yield JobManager(job_store, registry, launcher, source_rules(job_store, [str(tmp_path)]))
    for job_id in launcher.running():  # never leave a worker behind
        launcher.cancel(job_id, None)


@pytest.fixture
def bridge_url(registry: Registry, tmp_path: Path) -> Iterator[str]:
    """A real bridge (uvicorn in a thread) on `registry` with the job routes; token BRIDGE_TOKEN is admin.
    Its local launcher starts worker subprocesses with this process's environment (RAY_ADDRESS too);
    its training root is the test's tmp folder."""
    settings = {
        "store": registry.url,
        "tokens": {BRIDGE_TOKEN: ["admin"]},
        "jobs_db": str(tmp_path / "jobs.sqlite"),
        "train_roots": [str(tmp_path)],
    }
    app = create_app(BridgeSettings.model_validate(settings))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer encoder with the packaged MiniLM tokenizer (no hub, trains in seconds)."""
    return random_bert(tmp_path_factory.mktemp("tiny-bert"), layers=1, max_positions=128, classifier=False)


@pytest.fixture(autouse=True)
def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
