"""What the docs' blocks run against, one of each per test session: a demo home, a bridge serving it,
a shell set up as the docs assume, and (for the PostgreSQL blocks) a database `sqlml demo --postgres`
loaded.

The home is tests/postgres/demo_standins.py's: the demo's tables and models with the demo's names
and signatures (stand-ins, built in seconds), plus the second versions the HTTP docs name
(`lead_score` and `sentiment` version 2 under the alias `staging`). The bridge knows the tokens the
docs spell out (`secret`, `tok-for-everyone`, ...), so their blocks run as written; only its port
differs from the docs' 8765, and blocks have that address (and the demo database's name) replaced.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import psycopg
import pyarrow as pa
import pytest

from sqlml.bridge.client import LocalClient
from sqlml.bridge.manifest import Manifest
from sqlml.bridge.registry import Registry
from tests.postgres.conftest import PG_DSN, free_port, installed_extension
from tests.postgres.demo_standins import HERE as STANDINS
from tests.postgres.demo_standins import SQLML, build_demo_home, run_sqlml
from tests.served_bridge import ServedBridge

from .doc_blocks import ROOT

__all__ = ["installed_extension"]  # a fixture of tests/postgres, used by doc_database

ADMIN_TOKEN = "secret"  # docs/http-api.md: `export ... TOKEN=secret`; README: `ml.set_token('secret')`
DOC_TOKENS = {
    ADMIN_TOKEN: ["admin"],
    "tok-for-everyone": ["predict:*"],  # docs/postgres.md, The bridge token
    "tok-sentiment-only": ["predict:sentiment"],
    "train-token": ["train"],  # docs/training.md, CLI
}
# Roles the PostgreSQL blocks grant to or store tokens for; created inside each block's transaction.
DOC_ROLES = ("analyst", "intern")


@dataclass(frozen=True)
class DocBridge:
    url: str
    port: int
    token: str


@dataclass(frozen=True)
class DocDatabase:
    name: str
    dsn: str


def checkout_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess: the checkout first on the path (as the tests import it) and
    the stand-in runtimes importable as `fake_runtimes`."""
    path = os.pathsep.join([str(ROOT), str(STANDINS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, **extra}


@pytest.fixture(scope="session")
def doc_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sqlml.bridge.training.leads import train_leads
    from sqlml.bridge.training.sentiment import sentiment_signature

    home = tmp_path_factory.mktemp("doc-home")
    store = build_demo_home(home)
    registry = Registry(store)
    train_leads(registry, alias="staging", progress=False, n_estimators=8, max_depth=3, cv_folds=2, seed=8)
    sentiment = Manifest(name="sentiment", runtime="fake_sentiment", task="sentiment", signature=sentiment_signature())
    (home / "artifacts" / "sentiment-2").mkdir(parents=True)
    registry.publish(sentiment, home / "artifacts" / "sentiment-2", alias="staging")
    return home


@pytest.fixture(scope="session")
def doc_bridge(doc_home: Path) -> Iterator[DocBridge]:
    """`sqlml serve` as docs/http-api.md starts it, on a free port, with the docs' tokens; each model
    scored once, so listings show them loaded as they would be by then."""
    port = free_port()
    command = [SQLML, "serve", "--host", "127.0.0.1", "--port", str(port), "--store", str(doc_home / "models"),
               "--memory-budget", "2GB"]  # fmt: skip
    env = checkout_env(SQLML_HOME=str(doc_home), SQLML_PLUGINS="fake_runtimes", SQLML_TOKENS=json.dumps(DOC_TOKENS))
    bridge = ServedBridge(command, f"http://127.0.0.1:{port}", doc_home / "bridge.log", env)
    try:
        bridge.wait_ready()
        warm_up(bridge.url, doc_home)
        yield DocBridge(bridge.url, port, ADMIN_TOKEN)
    finally:
        bridge.stop()


def warm_up(url: str, home: Path) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with duckdb.connect(str(home / "demo.duckdb"), read_only=True) as con:
        lead = con.sql("SELECT * EXCLUDE (lead_id, purchased) FROM leads LIMIT 1").to_arrow_table()
    calls = [
        ("sentiment/predict", {"rows": [{"text": "great coffee"}]}),
        ("lead_score/predict", {"rows": lead.to_pylist()}),
        ("household_power/forecast", {"series": None, "horizon": 1, "quantiles": ["p50"]}),
    ]
    for path, body in calls:
        httpx.post(f"{url}/v1/models/{path}", json=body, headers=headers, timeout=60).raise_for_status()


@pytest.fixture(scope="session")
def doc_client(doc_home: Path) -> LocalClient:
    """Embedded mode over the demo home, in this process, with the stand-in runtimes registered."""
    from tests.postgres import fake_runtimes  # noqa: F401  (registers fake_sentiment)

    return LocalClient(Registry(doc_home / "models"))


@pytest.fixture(scope="session")
def doc_database(installed_extension: None, doc_home: Path, doc_bridge: DocBridge) -> Iterator[DocDatabase]:
    """README's PostgreSQL path: `sqlml demo --postgres DSN --bridge URL --token T` into a new database."""
    name = f"sqlml_docs_{uuid.uuid4().hex[:10]}"
    dsn = f"{PG_DSN} dbname={name}"
    try:
        demo = run_sqlml(["demo", "--postgres", dsn, "--bridge", doc_bridge.url], doc_home, doc_bridge.token)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        yield DocDatabase(name, dsn)
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def shell_env(tmp_path_factory: pytest.TempPathFactory, doc_home: Path, doc_bridge: DocBridge) -> dict[str, str]:
    """The environment of a shell block: `~/.sqlml` is the demo home, `sqlml` the venv's (with the
    stand-in runtimes registered, as the bridge has them), `$SQLML_BRIDGE` and `$TOKEN` as
    docs/http-api.md exports them, curl failing on an HTTP error, and a working folder that shows the
    checkout's top level through links, so that blocks read its files but write beside them. The
    folder also holds the `batch.arrows` docs/http-api.md sends."""
    base = tmp_path_factory.mktemp("doc-shell")
    home, bin_dir, work = base / "home", base / "bin", base / "work"
    for folder in (home, bin_dir, work):
        folder.mkdir()
    (home / ".sqlml").symlink_to(doc_home)
    (home / ".curlrc").write_text("fail-with-body\nsilent\nshow-error\n")
    wrapper = bin_dir / "sqlml"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import fake_runtimes  # the stand-in sentiment runtime, as the bridge loads it (SQLML_PLUGINS)\n"
        "from sqlml.cli import main\n\nmain()\n"
    )
    wrapper.chmod(0o755)
    for entry in ROOT.iterdir():
        if entry.name != ".git":
            (work / entry.name).symlink_to(entry)
    with duckdb.connect(str(doc_home / "demo.duckdb"), read_only=True) as con:
        leads = con.sql("SELECT * EXCLUDE (lead_id, purchased) FROM leads LIMIT 3").to_arrow_table()
    with pa.OSFile(str(work / "batch.arrows"), "wb") as sink, pa.ipc.new_stream(sink, leads.schema) as writer:
        writer.write_table(leads)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    return checkout_env(
        HOME=str(home),
        SQLML_HOME=str(doc_home),
        PATH=path,
        PWD=str(work),
        SQLML_BRIDGE=doc_bridge.url,
        TOKEN=doc_bridge.token,
        COLUMNS="200",
        NO_COLOR="1",
    )
