"""Fixtures for the PostgreSQL extension's integration tests: the real PostgreSQL 15 on
127.0.0.1:5432 with PL/Python, the extension built and installed by `make -C extension install`,
a scratch database per session, and a real bridge process over a temporary store holding tiny
real models (a 4-feature XGBoost lead model and a fake sentiment runtime loaded via SQLML_PLUGINS).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
import xgboost as xgb

from sqlml.bridge.manifest import Column, Manifest, Signature
from sqlml.bridge.registry import Registry
from sqlml.bridge.training.sentiment import sentiment_signature

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
PG_DSN = os.environ.get("SQLML_TEST_PG", "host=127.0.0.1 port=5432 user=postgres")
LEAD_FEATURES = ["mostype", "maothers", "mgemleef", "ppersaut"]
ADMIN_TOKEN, USER_TOKEN = "tok-admin-" + uuid.uuid4().hex, "tok-user-" + uuid.uuid4().hex

pytestmark = [pytest.mark.postgres, pytest.mark.bridge]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train_lead_model(folder: Path, seed: int = 0) -> None:
    """A few-tree XGBoost classifier on synthetic data shaped like Caravan's bigint features."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 10, size=(500, len(LEAD_FEATURES))).astype(np.float32)
    y = (x[:, 0] + rng.normal(0, 2, 500) > 5).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(x, label=y), 5)
    folder.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(folder / "model.json"))


def publish_models(store: Path) -> None:
    registry = Registry(store)
    for seed in (0, 1):  # two versions, so deploy / rollback have somewhere to go
        train_lead_model(store.parent / f"lead-{seed}", seed)
        registry.publish(
            Manifest(
                name="lead_score",
                runtime="xgboost",
                task="classification",
                description="tiny test lead model",
                lineage={"target": "purchased"},  # what ml.evaluate compares with
                signature=Signature(
                    inputs=[Column(name=n, type="bigint") for n in LEAD_FEATURES],
                    outputs=[Column(name="probability", type="double")],
                ),
            ),
            store.parent / f"lead-{seed}",
            alias="production" if seed == 0 else None,
        )
    (store.parent / "sentiment").mkdir(exist_ok=True)
    registry.publish(
        Manifest(
            name="sentiment",
            runtime="fake_sentiment",
            task="sentiment",
            signature=sentiment_signature(),  # the trained model's: label, confidence, four scores
        ),
        store.parent / "sentiment",
    )


_STORES: dict[str, Path] = {}  # bridge URL -> its model store


@pytest.fixture(scope="session")
def bridge_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("sqlml_home")
    store = home / "models"
    publish_models(store)
    port = free_port()
    env = {
        **os.environ,
        "SQLML_HOME": str(home),
        "SQLML_PLUGINS": "fake_runtimes",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "SQLML_TOKENS": json.dumps({ADMIN_TOKEN: ["admin", "predict:*"], USER_TOKEN: ["predict:sentiment"]}),
    }
    log = (home / "bridge.log").open("w")
    command = [str(Path(sys.executable).parent / "sqlml"), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--store", str(store)]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    _STORES[url] = store
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the bridge exited: {(home / 'bridge.log').read_text()[-2000:]}")
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the bridge did not become ready in 60 s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def bridge_store(bridge_url: str) -> Registry:
    """The store of the test bridge: a test publishes into it, and the bridge serves at once."""
    return Registry(_STORES[bridge_url])


@pytest.fixture(scope="session")
def installed_extension() -> None:
    subprocess.run(["make", "-C", str(ROOT / "extension"), "install"], check=True, capture_output=True)


@pytest.fixture(scope="session")
def database(installed_extension: None, bridge_url: str) -> Iterator[str]:
    """A scratch database with the extension, pointed at the test bridge with the admin token."""
    name = f"sqlml_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{PG_DSN} dbname={name}"
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION sqlml CASCADE")
            conn.execute(f"ALTER DATABASE \"{name}\" SET sqlml.bridge_url = '{bridge_url}'")
            conn.execute(f"ALTER DATABASE \"{name}\" SET sqlml.timeout_ms = '5000'")
            conn.execute(f"SET sqlml.bridge_url = '{bridge_url}'")  # ALTER DATABASE applies to new sessions
            conn.execute("SELECT ml.set_token(%s)", (ADMIN_TOKEN,))
            conn.execute(
                "CREATE TABLE leads AS SELECT g AS id, (g % 10)::bigint AS mostype, (g % 3)::bigint AS maothers,"
                " (g % 5)::bigint AS mgemleef, (g % 7)::bigint AS ppersaut FROM generate_series(1, 2500) g"
            )
            conn.execute("SELECT * FROM ml.sync()")
        yield dsn
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def conn(database: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database, autocommit=True) as connection:
        yield connection
