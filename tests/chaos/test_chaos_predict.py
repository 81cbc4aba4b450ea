"""Chaos during `ml.predict_query` (issue #15): the bridge, the model's process and the PostgreSQL
backend are killed at random moments while an INSERT ... SELECT scores 3,000 leads. The statement
either fails with a clear SQL error and commits nothing, or completes; retried, it completes with
exactly one result per lead, each equal to the calm bridge's score. Each test runs a few seeded
rounds (the seed is printed; SQLML_CHAOS_SEED replays it)."""

from __future__ import annotations

import random
import time
from typing import Any

import psycopg
import pytest

from .conftest import (
    LEADS,
    PREDICT_SQL,
    ChaosBridge,
    check_after_scenario,
    check_results,
    connect,
    kill_process,
    run_in_thread,
)

pytestmark = [pytest.mark.postgres, pytest.mark.bridge, pytest.mark.timeout(120)]

ROUNDS = 4
INSERT = f"INSERT INTO results {PREDICT_SQL}"
MODEL_PROCESS = "sqlml.bridge.model_process"
KILLS_PER_STATEMENT = 3
WARM_UP = "SELECT count(*) FROM ml.predict_query('lead_score', 'SELECT * FROM leads WHERE id <= 10', 'id')"


def outcome_elapsed(started: float) -> float:
    return time.monotonic() - started


def fresh_results(conn: psycopg.Connection[Any]) -> None:
    # no unique constraint on purpose: a duplicated result must be countable, not refused
    conn.execute("DROP TABLE IF EXISTS results")
    conn.execute("CREATE TABLE results (key text, result jsonb)")


def count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM results").fetchone()
    assert row is not None
    return int(row[0])


def calm_seconds(conn: psycopg.Connection[Any]) -> float:
    """How long one scoring statement takes here, so that kills land within it (after a warm-up:
    a session's first call loads the helper, the bridge's first call loads the model)."""
    conn.execute(WARM_UP)
    fresh_results(conn)
    started = time.monotonic()
    conn.execute(INSERT)  # type: ignore[arg-type]
    seconds = time.monotonic() - started
    fresh_results(conn)
    return seconds


def insert_until_complete(conn: psycopg.Connection[Any], attempts: int = 5) -> int:
    """Retry the scoring statement on the same session; returns the attempts it took."""
    for attempt in range(1, attempts + 1):
        try:
            conn.execute(INSERT)  # type: ignore[arg-type]
            return attempt
        except psycopg.Error as exc:
            assert count(conn) == 0, f"a failed attempt committed rows: {exc}"
            time.sleep(0.5)
    raise AssertionError(f"the statement did not complete in {attempts} attempts")


def assert_clear_failure(error: BaseException, *expected: str) -> None:
    assert isinstance(error, psycopg.Error), repr(error)
    text = str(error)
    assert any(word in text for word in expected), f"unclear error: {text!r}"


def test_bridge_killed_and_restarted_during_predict_query(
    bridge: ChaosBridge, chaos_db: str, expected_scores: dict[str, float], rng: random.Random
) -> None:
    with connect(chaos_db) as conn:
        duration = calm_seconds(conn)
        outcomes = []
        for round_ in range(ROUNDS):
            fresh_results(conn)
            thread, outcome = run_in_thread(lambda: conn.execute(INSERT))  # type: ignore[arg-type]
            time.sleep(rng.uniform(0.0, duration * 1.2))
            bridge.kill()
            thread.join(30)
            assert not thread.is_alive(), f"round {round_}: the statement hangs after the bridge died"
            if outcome.error is not None:
                assert_clear_failure(outcome.error, "cannot reach the bridge", "bridge")
                assert count(conn) == 0, f"round {round_}: a failed statement left rows"
            # while the bridge is down the same session fails fast and clearly, and commits nothing
            started = time.monotonic()
            with pytest.raises(psycopg.Error, match="cannot reach the bridge") as down:
                conn.execute(INSERT)  # type: ignore[arg-type]
            assert down.value.sqlstate == "08001" and time.monotonic() - started < 5
            assert count(conn) == (LEADS if outcome.error is None else 0)
            bridge.start()
            if outcome.error is not None:
                insert_until_complete(conn)  # the session reconnects by itself
            check_results(conn, "results", expected_scores)
            outcomes.append("failed" if outcome.error else "completed")
        print(f"statement outcomes when the bridge was killed: {outcomes}")
    check_after_scenario(bridge)


def test_model_process_killed_during_predict_query(
    bridge: ChaosBridge, chaos_db: str, expected_scores: dict[str, float], rng: random.Random
) -> None:
    bridge.restart("--model-processes", "xgboost")  # lead_score's runtime
    bridge_pid = bridge.pid
    with connect(chaos_db) as conn:
        duration = calm_seconds(conn)
        assert len(bridge.children(MODEL_PROCESS)) == 1
        outcomes = []
        for round_ in range(ROUNDS):
            fresh_results(conn)
            thread_started = time.monotonic()
            thread, outcome = run_in_thread(lambda: conn.execute(INSERT))  # type: ignore[arg-type]
            killed = []
            for moment in sorted(rng.uniform(0.0, duration) for _ in range(KILLS_PER_STATEMENT)):
                time.sleep(max(0.0, moment - outcome_elapsed(thread_started)))
                for pid in bridge.children(MODEL_PROCESS):  # most of the time goes to PostgreSQL's side
                    kill_process(pid)
                    killed.append(pid)
            thread.join(30)
            assert not thread.is_alive(), f"round {round_}: the statement hangs after its model process died"
            if outcome.error is not None:
                assert_clear_failure(outcome.error, "its process was killed by SIGKILL")
                assert count(conn) == 0
                insert_until_complete(conn)
            check_results(conn, "results", expected_scores)
            assert bridge.pid == bridge_pid and bridge.process is not None and bridge.process.poll() is None
            assert bridge.ready()
            conn.execute(WARM_UP)
            replacement = bridge.children(MODEL_PROCESS)  # the next call started a new one
            assert len(replacement) == 1 and not set(replacement) & set(killed)
            outcomes.append(("failed" if outcome.error else "completed", len(killed)))
        print(f"(statement outcome, model processes killed) per round: {outcomes}")
    check_after_scenario(bridge)


def test_backend_cancelled_or_terminated_during_predict_query(
    bridge: ChaosBridge, chaos_db: str, expected_scores: dict[str, float], rng: random.Random
) -> None:
    with connect(chaos_db) as other, connect(chaos_db) as watcher:
        duration = calm_seconds(other)
        outcomes = []
        for round_ in range(ROUNDS):
            how = ["pg_cancel_backend", "pg_terminate_backend"][round_ % 2]
            fresh_results(watcher)
            victim = connect(chaos_db)
            victim.execute(WARM_UP)  # the helper's first load is not what this round is about
            pid = victim.info.backend_pid
            thread, outcome = run_in_thread(lambda: victim.execute(INSERT))  # type: ignore[arg-type]  # noqa: B023
            wait_active(watcher, pid)
            delay = rng.uniform(0.0, duration)
            time.sleep(delay)
            watcher.execute(f"SELECT {how}(%s)", [pid])  # type: ignore[arg-type]
            thread.join(30)
            print(f"{how} after {delay:.3f} s of {duration:.3f}: {outcome.seconds:.3f} s, {outcome.error!r:.160}")
            assert not thread.is_alive(), f"round {round_}: {how} did not end the statement"
            if outcome.error is not None:
                assert isinstance(outcome.error, psycopg.Error), repr(outcome.error)
                if how == "pg_cancel_backend":
                    assert isinstance(outcome.error, psycopg.errors.QueryCanceled), repr(outcome.error)
                assert count(watcher) == 0, f"round {round_}: a {how}ed statement left rows"
            # another session scores meanwhile, on the same bridge
            scored = other.execute(
                "SELECT count(*) FROM ml.predict_query('lead_score', 'SELECT * FROM leads WHERE id <= 250', 'id')"
            ).fetchone()
            assert scored == (250,)
            if outcome.error is not None:
                if how == "pg_cancel_backend":
                    insert_until_complete(victim)  # the cancelled session carries on
                else:
                    assert victim.closed or victim.broken
                    with connect(chaos_db) as again:
                        insert_until_complete(again)
            victim.close()
            check_results(watcher, "results", expected_scores)
            outcomes.append((how, "failed" if outcome.error else "completed"))
        print(f"(signal, statement outcome) per round: {outcomes}")
        assert bridge.ready()
    check_after_scenario(bridge)


def wait_active(conn: psycopg.Connection[Any], pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
        if row is not None and row[0] == "active":
            return
        time.sleep(0.01)
    raise AssertionError(f"backend {pid} never became active")
