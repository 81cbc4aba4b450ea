"""`ml.train` and `ml.job` end to end: PostgreSQL with the sqlml extension, a real bridge with the
job routes, the rows read by the bridge from the same database; the new version then scores
through `ml.predict`."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from sqlml.bridge.app import create_app
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings

pytestmark = pytest.mark.postgres


def _extension_installed() -> bool:
    sharedir = subprocess.run(["pg_config", "--sharedir"], capture_output=True, text=True, check=False).stdout.strip()
    return (Path(sharedir) / "extension" / "sqlml.control").exists()


@pytest.fixture
def bridge_url(registry: Registry, tmp_path: Path) -> Iterator[str]:
    app = create_app(
        BridgeSettings.model_validate(
            {"store": registry.url, "tokens": {"sql-token": ["admin"]}, "jobs_db": str(tmp_path / "jobs.sqlite")}
        )
    )
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


def test_ml_train_then_ml_job_then_the_version_serves_through_sql(
    pg_leads: str, bridge_url: str, registry: Registry
) -> None:
    assert _extension_installed(), "the sqlml extension is not installed: run `make -C extension install`"
    import psycopg

    with psycopg.connect(pg_leads, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS sqlml CASCADE")
        conn.execute(f"SET sqlml.bridge_url = '{bridge_url}'")  # type: ignore[arg-type]
        conn.execute("SET sqlml.timeout_ms = 30000")
        conn.execute("SELECT ml.set_token('sql-token')")

        with pytest.raises(psycopg.errors.UndefinedTable):  # checked as the caller, before the bridge
            conn.execute("SELECT ml.train('leads_sql', 'lead_scoring', 'SELECT * FROM nope', 'purchased')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # no way around ml.train's check
            conn.execute("""SELECT ml._submit_job('{"model": "x"}')""")
        with pytest.raises(psycopg.Error, match="unknown task 'clustering'"):
            conn.execute("SELECT ml.train('leads_sql', 'clustering', 'SELECT * FROM leads', 'purchased')")

        job_id = conn.execute(
            "SELECT ml.train('leads_sql', 'classification', 'SELECT income, cars, age, owner, purchased FROM leads',"
            """ 'purchased', '{"n_estimators": 15, "max_depth": 3, "learning_rate": 0.3}')"""
        ).fetchone()[0]  # type: ignore[index]
        deadline = time.monotonic() + 120
        while True:
            row = conn.execute("SELECT state, version, promoted, metrics, error FROM ml.job(%s)", [job_id]).fetchone()
            assert row is not None
            if row[0] not in ("queued", "running"):
                break
            assert time.monotonic() < deadline
            time.sleep(0.5)
        state, version, promoted, metrics, error = row
        assert (state, version, promoted) == ("succeeded", 1, True), error
        assert metrics["auc"] > 0.8

        features = {"income": 9, "cars": 3, "age": 40.0, "owner": True}
        scored = conn.execute("SELECT ml.predict('leads_sql', %s::jsonb)", [json.dumps(features)]).fetchone()
        assert scored is not None and scored[0]["probability"] > 0.5
    lineage = registry.describe("leads_sql").lineage
    assert lineage["source"].startswith("postgres database sqlml_train_")
