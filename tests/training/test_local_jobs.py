"""Training jobs on the local backend: from PostgreSQL and DuckDB, promotion, bad specs, faults."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sqlml.bridge.host import ModelHost
from sqlml.bridge.jobs.local import pid_alive
from sqlml.bridge.jobs.runner import JobManager
from sqlml.bridge.jobs.store import JobStore
from sqlml.bridge.registry import Registry
from sqlml.errors import BadRequest

QUICK = {"n_estimators": 20, "max_depth": 3, "learning_rate": 0.3}


def lead_spec(source: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": "leads_job",
        "task": "lead_scoring",
        "source": source,
        "target": "purchased",
        "features": ["income", "cars", "age", "owner", "visits"],
        "params": QUICK,
    }
    spec.update(overrides)
    return spec


def pg_source(dsn: str, query: str = "SELECT * FROM leads") -> dict[str, Any]:
    return {"dsn": dsn, "query": query}


@pytest.mark.postgres
def test_lead_scoring_from_postgres_publishes_promotes_and_serves(
    manager: JobManager, registry: Registry, pg_reader: str
) -> None:
    record = manager.submit(lead_spec(pg_source(pg_reader)))
    assert record.state in ("queued", "running")
    done = manager.wait(record.id, timeout=120)
    assert done.state == "succeeded", done.error
    assert done.version == 1 and done.promoted and done.progress == 1.0
    assert done.metrics["auc"] > 0.8

    assert registry.resolve("leads_job") == 1
    manifest = registry.describe("leads_job")
    assert manifest.lineage["rows"] == 600
    assert manifest.lineage["query"] == "SELECT * FROM leads"
    assert len(manifest.lineage["data_sha256"]) == 64
    types = {c.name: c.type for c in manifest.signature.inputs}
    assert types == {"income": "bigint", "cars": "bigint", "age": "double", "owner": "boolean", "visits": "bigint"}

    scored = ModelHost(registry).predict(
        "leads_job",
        pa.table({"income": [9, 0], "cars": [3, 0], "age": [40.0, 40.0], "owner": [True, True], "visits": [1, 1]}),
    )
    high, low = scored.column("probability").to_pylist()
    assert high > 0.5 > low
    assert "publishing 1 version(s)" in Path(done.log_path).read_text()


@pytest.mark.postgres
def test_if_better_keeps_production_when_the_new_version_is_worse(
    manager: JobManager, registry: Registry, pg_reader: str
) -> None:
    first = manager.wait(manager.submit(lead_spec(pg_source(pg_reader))).id, timeout=120)
    # one shallow tree on a feature that carries no signal cannot beat the first model's AUC
    worse = lead_spec(pg_source(pg_reader), features=["visits"], params={"n_estimators": 1, "max_depth": 1})
    second = manager.wait(manager.submit(worse).id, timeout=120)
    assert (first.version, first.promoted) == (1, True)
    assert (second.state, second.version, second.promoted) == ("succeeded", 2, False)
    assert "not promoted" in second.message
    assert registry.aliases("leads_job") == {"production": 1}
    always = manager.wait(manager.submit({**worse, "promote": "always"}).id, timeout=120)
    assert always.promoted and registry.resolve("leads_job") == 3
    assert registry.rollback("leads_job") == 2  # rollback is one call


def test_lead_scoring_from_a_duckdb_file(manager: JobManager, registry: Registry, duckdb_leads: Path) -> None:
    spec = lead_spec({"duckdb": str(duckdb_leads), "query": "SELECT * EXCLUDE (lead_id) FROM leads;"}, features=None)
    done = manager.wait(manager.submit(spec).id, timeout=120)
    assert done.state == "succeeded", done.error
    assert registry.describe("leads_job").signature.input_names() == ["income", "cars", "age", "owner", "visits"]


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "clustering"}, "unknown task 'clustering'"),
        ({"source": {"query": "SELECT * FROM no_such_table"}}, "the training query failed"),
        ({"source": {"query": "SELECT 1 AS a; DROP TABLE leads"}}, "the training query failed"),
        ({"target": "purchase"}, 'has no column "purchase"'),
        ({"source": {"query": "SELECT * FROM leads WHERE false"}}, "returned no rows"),
        ({"resources": {"gpus": 1}}, "asks for 1 GPU(s) but this machine has 0"),
        ({"features": ["income", "lead_note"]}, 'has no column "lead_note"'),
    ],
)
def test_bad_specs_are_refused_before_any_work(
    manager: JobManager, job_store: JobStore, registry: Registry, pg_reader: str, change: dict[str, Any], message: str
) -> None:
    spec = lead_spec(pg_source(pg_reader))
    if "source" in change:
        change = {"source": {"dsn": pg_reader, **change["source"]}}
    if change.get("features") == ["income", "lead_note"]:
        spec["features"] = change["features"]
    else:
        spec.update(change)
    with pytest.raises(BadRequest) as caught:
        manager.submit(spec)
    assert message in str(caught.value)
    assert job_store.list() == []  # refused, not queued
    assert registry.names() == []


def test_a_text_feature_is_a_category(manager: JobManager, duckdb_leads: Path, registry: Registry) -> None:
    query = "SELECT income, 'x' || cars AS cars_text, purchased FROM leads"
    job = manager.submit(lead_spec({"duckdb": str(duckdb_leads), "query": query}, features=None))
    record = manager.wait(job.id, timeout=120)
    assert record.state == "succeeded", record.error
    inputs = {c.name: c.type for c in registry.describe("leads_job").signature.inputs}
    assert inputs == {"income": "bigint", "cars_text": "text"}


def _wait_running(manager: JobManager, job_id: str, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = manager.store.get(job_id)
        if record.state == "running" and record.progress >= 0.2 and record.pid:
            return record.pid
        assert not record.final, record.error
        time.sleep(0.1)
    raise AssertionError("the job never started fitting")


SLOW = {"n_estimators": 200_000, "max_depth": 6, "learning_rate": 0.01}


def test_a_killed_worker_fails_the_job_with_its_logs_and_leaves_the_registry_untouched(
    manager: JobManager, registry: Registry, duckdb_leads: Path
) -> None:
    spec = lead_spec({"duckdb": str(duckdb_leads), "query": "SELECT * FROM leads"}, params=SLOW)
    record = manager.submit(spec)
    pid = _wait_running(manager, record.id)
    os.kill(pid, signal.SIGKILL)
    done = manager.wait(record.id, timeout=30)
    assert done.state == "failed"
    assert "the worker was killed by SIGKILL" in (done.error or "")
    assert "reading rows from duckdb" in (done.error or "")  # the log tail travels with the error
    assert registry.names() == []


def test_cancel_stops_the_worker(manager: JobManager, registry: Registry, duckdb_leads: Path) -> None:
    spec = lead_spec({"duckdb": str(duckdb_leads), "query": "SELECT * FROM leads"}, params=SLOW)
    record = manager.submit(spec)
    pid = _wait_running(manager, record.id)
    cancelled = manager.cancel(record.id)
    assert cancelled.state == "cancelled"
    assert not pid_alive(pid)
    time.sleep(0.3)  # the watcher thread has seen the exit: a cancelled job stays cancelled
    assert manager.store.get(record.id).state == "cancelled"
    assert registry.names() == []


def test_a_restarted_store_keeps_history_and_fails_orphans(job_store: JobStore, duckdb_leads: Path) -> None:
    from sqlml.bridge.jobs.spec import parse_spec

    spec = parse_spec(lead_spec({"duckdb": str(duckdb_leads), "query": "SELECT * FROM leads"}))
    done = job_store.create(spec)
    job_store.finish(done.id, "succeeded", version=4, metrics={"auc": 0.9}, promoted=True)
    orphan = job_store.create(spec)
    job_store.update(orphan.id, state="running", pid=2**22 + 12345)  # no such process

    reopened = JobStore(job_store.path)  # what a bridge restart does
    assert [r.id for r in reopened.list()] == [orphan.id, done.id]
    assert reopened.get(done.id).metrics == {"auc": 0.9} and reopened.get(done.id).version == 4
    assert reopened.recover(pid_alive) == [orphan.id]
    assert "restarted" in (reopened.get(orphan.id).error or "")
    assert reopened.update(done.id, state="running") is False  # final states stay final


def test_a_job_whose_worker_died_after_a_restart_fails_when_looked_at(
    manager: JobManager, job_store: JobStore, duckdb_leads: Path
) -> None:
    from sqlml.bridge.jobs.spec import parse_spec

    record = job_store.create(parse_spec(lead_spec({"duckdb": str(duckdb_leads), "query": "SELECT * FROM leads"})))
    job_store.update(record.id, state="running", pid=2**22 + 12346)  # alive at restart, gone since
    assert manager.get(record.id).state == "failed"
    assert "worker is gone" in (manager.get(record.id).error or "")


def test_jobs_of_the_removed_database_source_kind_stay_listable(job_store: JobStore, duckdb_leads: Path) -> None:
    """A store written by an older bridge: its specs carry `source.database`, now refused on submit."""
    import json
    import sqlite3

    from sqlml.bridge.jobs.spec import parse_spec

    record = job_store.create(parse_spec(lead_spec({"duckdb": str(duckdb_leads), "query": "SELECT * FROM leads"})))
    old = json.loads(record.spec.model_dump_json())
    old["source"] = {"query": "SELECT * FROM leads", "dsn": None, "database": "crm", "duckdb": None}
    with sqlite3.connect(job_store.path) as conn:
        conn.execute("UPDATE jobs SET spec = ? WHERE id = ?", (json.dumps(old), record.id))
    kept = job_store.get(record.id)
    assert kept.summary()["spec"]["source"]["where"] == "postgres database crm"
    assert job_store.finish(record.id, "failed", error="old") is True
