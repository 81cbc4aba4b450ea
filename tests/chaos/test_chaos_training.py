"""Chaos during training from SQL (issue #15): the PostgreSQL backend is cancelled or terminated
while `ml.train` streams rows, and the bridge and/or the job's worker subprocess are SIGKILLed while
a job runs. Afterwards no job stays queued or running, every job that ended badly says why, the
registry holds only versions that a succeeded job published (each with a valid manifest), debris
of a crashed writer is never served and is cleaned at start once stale, and a later job publishes."""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sqlml.bridge.jobs.store import JobRecord
from sqlml.bridge.registry import STALE_DEBRIS_SECONDS, Registry
from tests.training.sql_jobs import poll_job

from .conftest import ChaosBridge, check_after_scenario, connect, debris, kill_process, run_in_thread

pytestmark = [pytest.mark.postgres, pytest.mark.bridge, pytest.mark.timeout(180)]

PARAMS = '{"n_estimators": 5, "max_depth": 2}'
TRAIN_ROWS = 60_000  # about 2 MB of row_to_json text: ml.train streams it for a good part of a second
TRAIN_QUERY = "SELECT a, b, c, y FROM train_rows"
SLOWER = '{"n_estimators": 150, "max_depth": 4}'  # a second or two of training here
LONG = '{"n_estimators": 5000, "max_depth": 8}'  # minutes: only ever run to be killed
FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def train_table(chaos_db: str) -> str:
    with connect(chaos_db) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS train_rows AS SELECT g AS id, (g % 10)::bigint AS a, (g % 7)::bigint AS b,"
            f" ((g * 7919) % 13)::bigint AS c, (g % 10 > 4) AS y FROM generate_series(1, {TRAIN_ROWS}) g"
        )
    return "train_rows"


def train(conn: psycopg.Connection[Any], model: str, query: str = TRAIN_QUERY, params: str = PARAMS) -> str:
    row = conn.execute("SELECT ml.train(%s, 'lead_scoring', %s, 'y', %s::jsonb)", [model, query, params]).fetchone()
    assert row is not None
    return str(row[0])


def jobs_of(bridge: ChaosBridge, model: str) -> list[JobRecord]:
    return [record for record in bridge.jobs.list(limit=10_000) if record.spec.model == model]


def wait_final(bridge: ChaosBridge, job_id: str, timeout: float = 60.0) -> JobRecord:
    """Poll through the bridge (as `ml.job` does) until the job is final."""
    deadline = time.monotonic() + timeout
    while True:
        body = bridge.get(f"/v1/jobs/{job_id}")
        if body["state"] in FINAL:
            return bridge.jobs.get(job_id)
        assert time.monotonic() < deadline, f"job {job_id} still {body['state']} after {timeout:g} s: {body}"
        time.sleep(0.3)


def check_versions_come_from_succeeded_jobs(bridge: ChaosBridge, model: str) -> None:
    published = sorted(r.version for r in jobs_of(bridge, model) if r.state == "succeeded" and r.version)
    registry = Registry(bridge.store)
    assert registry.versions(model) == published if (bridge.store / model).exists() else published == []
    for version in published:
        assert registry.manifest(model, version).version == version


def test_backend_cancelled_or_terminated_while_ml_train_streams_rows(
    bridge: ChaosBridge, chaos_db: str, train_table: str, rng: random.Random
) -> None:
    model = f"chaos_stream_{uuid.uuid4().hex[:6]}"
    uploads = bridge.home / "jobs" / "uploads"
    with connect(chaos_db) as watcher:
        started = time.monotonic()
        with connect(chaos_db) as calm:
            calm_job = train(calm, model)
        duration = time.monotonic() - started
        assert wait_final(bridge, calm_job).state == "succeeded"
        before = set(os.listdir(uploads)) if uploads.exists() else set()
        outcomes = []
        for round_ in range(4):
            how = ["pg_cancel_backend", "pg_terminate_backend"][round_ % 2]
            victim = connect(chaos_db)
            victim.execute("SELECT 1")
            thread, outcome = run_in_thread(lambda: train(victim, model))  # noqa: B023
            delay = rng.uniform(0.0, duration * 0.6)  # the calm call also paid for the helper's first load
            time.sleep(delay)
            watcher.execute(f"SELECT {how}(%s)", [victim.info.backend_pid])  # type: ignore[arg-type]
            thread.join(60)
            assert not thread.is_alive(), f"round {round_}: {how} did not end ml.train"
            victim.close()
            ended = "failed" if outcome.error else "completed"
            outcomes.append((how, round(delay, 3), round(outcome.seconds, 3), ended))
            if outcome.error is not None:
                assert isinstance(outcome.error, psycopg.Error), repr(outcome.error)
        # Every job that was created, the caller saw its id or not, ends: none stays queued or running.
        for record in jobs_of(bridge, model):
            assert wait_final(bridge, record.id).state in FINAL
        orphans = (set(os.listdir(uploads)) if uploads.exists() else set()) - before
        referenced = {r.spec.source.upload for r in bridge.jobs.list(limit=10_000)}
        print(f"(signal, delay s, ml.train s, outcome): {outcomes}; training took {duration:.2f} s calm")
        print(f"uploads left without a job (swept after an hour): {len(orphans)}")
        assert not orphans & referenced, "an upload of a finished job was kept"
        check_versions_come_from_succeeded_jobs(bridge, model)
        # the sweep (run when an upload starts) removes orphans once they are stale
        for orphan in orphans:
            aged = time.time() - 2 * 3600
            os.utime(uploads / orphan, (aged, aged))
        with connect(chaos_db) as again:
            last = train(again, model)
        assert wait_final(bridge, last).state == "succeeded"
        assert not orphans & set(os.listdir(uploads))
    check_versions_come_from_succeeded_jobs(bridge, model)
    check_after_scenario(bridge)


def worker_pid(bridge: ChaosBridge, job_id: str, timeout: float = 30.0, running: bool = False) -> int | None:
    """The pid of the job's worker (once it trains, with `running`); None if the job ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = bridge.jobs.get(job_id)
        if record.pid and (record.state == "running" or not running):
            return record.pid
        if record.final:
            return None
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not start in {timeout:g} s")


def worker_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":  # exited; its parent (a killed bridge's is init) reaps it
            return True
        time.sleep(0.1)
    return False


def reaped(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


EXPECTED_ERRORS = {
    "worker": "the worker was killed by SIGKILL",
    "bridge+worker": "the bridge restarted while this job ran; its worker is gone",
    "bridge": None,  # the worker outlives its bridge and records its own result
}


def test_bridge_and_worker_killed_during_a_training_job(
    bridge: ChaosBridge, chaos_db: str, train_table: str, rng: random.Random
) -> None:
    model = f"chaos_job_{uuid.uuid4().hex[:6]}"
    query = "SELECT a, b, c, y FROM train_rows WHERE id <= 3000"
    outcomes = []
    with connect(chaos_db) as conn:
        started = time.monotonic()
        calm = train(conn, model, query, SLOWER)
        worker_pid(bridge, calm)
        assert wait_final(bridge, calm).state == "succeeded"
        duration = time.monotonic() - started  # a kill within it lands in the worker's start, training or publish
        for round_, what in enumerate(rng.sample(list(EXPECTED_ERRORS), k=len(EXPECTED_ERRORS))):
            job_id = train(conn, model, query, SLOWER)
            pid = worker_pid(bridge, job_id)
            delay = rng.uniform(0.0, duration)
            time.sleep(delay)
            if "bridge" in what:
                bridge.kill()
            if "worker" in what and pid is not None:
                kill_process(pid, group=True)  # the worker leads its own process group
                # reaped before the restart, so recovery reads a finished worker; an unreaped one
                # counts as gone too (bridge/jobs/local.py _is_zombie), this only keeps timings tight
                if "bridge" in what:
                    assert reaped(pid), f"worker {pid} was not reaped"
            if "bridge" in what:
                bridge.start()
            record = wait_final(bridge, job_id)
            state, _version, _promoted, _metrics, error = poll_job(conn, job_id, timeout_s=10)  # through SQL
            assert state == record.state
            outcomes.append((what, round(delay, 2), state))
            expected = EXPECTED_ERRORS[what]
            if state == "failed":
                assert expected is not None and error and expected in error, f"round {round_} ({what}): {error}"
            else:
                assert state == "succeeded", f"round {round_} ({what}): {state} {error}"
            assert pid is None or worker_gone(pid), f"round {round_} ({what}): worker {pid} left behind"
            check_versions_come_from_succeeded_jobs(bridge, model)
            check_after_scenario(bridge)
        print(f"(killed, after s, job state): {outcomes}; a calm job took {duration:.2f} s")
        left = debris(bridge.store)
        print(f"debris left after the kills: {[str(p.relative_to(bridge.store)) for p in left]}")
        last = train(conn, model, query)
        assert wait_final(bridge, last).state == "succeeded"
    check_versions_come_from_succeeded_jobs(bridge, model)
    check_after_scenario(bridge)


def test_a_worker_that_outlives_its_bridge_and_then_dies_fails_its_job(
    bridge: ChaosBridge, chaos_db: str, train_table: str
) -> None:
    model = f"chaos_orphan_{uuid.uuid4().hex[:6]}"
    with connect(chaos_db) as conn:
        job_id = train(conn, model, TRAIN_QUERY, LONG)
        pid = worker_pid(bridge, job_id, running=True)
        assert pid is not None
        bridge.kill()
        bridge.start()  # the worker is alive: the new bridge's recovery leaves its job running
        kill_process(pid, group=True)  # then the worker dies, a child of nobody the bridge knows
        record = wait_final(bridge, job_id, timeout=20)
        assert record.state == "failed" and record.error and "worker is gone" in record.error, record
    check_after_scenario(bridge)


def test_debris_of_a_crashed_writer_is_never_served_and_is_removed_at_start_once_stale(bridge: ChaosBridge) -> None:
    model_dir = bridge.store / "lead_score"
    versions = Registry(bridge.store).versions("lead_score")
    stale = [model_dir / f".staging-{uuid.uuid4().hex}", model_dir / f"aliases.json.{uuid.uuid4().hex}.tmp"]
    fresh = model_dir / f".staging-{uuid.uuid4().hex}"
    for folder in (stale[0], fresh):
        folder.mkdir()
        (folder / "model.json").write_text("{half written")
    stale[1].write_text('{"production": 99')
    assert Registry(bridge.store).versions("lead_score") == versions  # debris is never a version
    detail = bridge.get("/v1/models/lead_score")
    assert detail["versions"] == versions and detail["manifest"]["version"] in versions
    aged = time.time() - STALE_DEBRIS_SECONDS - 60  # (a Registry made now, as above, would remove it)
    for path in [*stale, *(stale[0].iterdir())]:
        os.utime(path, (aged, aged))
    bridge.kill()
    bridge.start()
    assert not any(path.exists() for path in stale), "stale debris survived the bridge's start"
    assert fresh.exists()  # a publisher on another replica may still be writing it
    check_after_scenario(bridge)
    shutil.rmtree(fresh)


def test_a_worker_that_outlives_its_bridge_and_dies_before_training_fails_its_job(
    bridge: ChaosBridge, chaos_db: str, train_table: str
) -> None:
    """As above, but the worker dies while its job is still `queued` (the worker records `running`
    only once its imports are done, seconds after the bridge recorded its pid)."""
    model = f"chaos_queued_{uuid.uuid4().hex[:6]}"
    with connect(chaos_db) as conn:
        job_id = train(conn, model, TRAIN_QUERY, LONG)
        pid = worker_pid(bridge, job_id)
        assert pid is not None
        os.killpg(pid, signal.SIGSTOP)  # hold it in its start-up, alive, so the job stays queued
        assert bridge.jobs.get(job_id).state == "queued"
        bridge.kill()
        bridge.start()  # the worker is alive: the new bridge's recovery leaves its job queued
        assert bridge.jobs.get(job_id).state == "queued"
        kill_process(pid, group=True)  # then the worker dies, a child of nobody the bridge knows
        assert reaped(pid)
        record = wait_final(bridge, job_id, timeout=8)  # a dead worker is visible at the first poll
        assert record.state == "failed" and record.error and "worker is gone" in record.error, record
    check_after_scenario(bridge)
