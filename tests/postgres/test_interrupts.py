"""A call to a stopped bridge (a real bridge process frozen with SIGSTOP: the kernel still accepts
the connection, nothing answers) ends as soon as PostgreSQL cancels the statement, by
`pg_cancel_backend` or `statement_timeout`, not when `sqlml.timeout_ms` runs out; the session stays
usable and talks to the bridge again once it is back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from .conftest import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.bridge]

PATIENT_TIMEOUT_MS = 40_000  # what the call would wait without a cancel


@pytest.fixture
def frozen_bridge(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A bridge process on an empty store, with auth off, frozen (SIGSTOP) once it answers."""
    port = free_port()
    env = {**os.environ, "SQLML_HOME": str(tmp_path), "SQLML_AUTH": "off"}
    command = [str(Path(sys.executable).parent / "sqlml"), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--store", str(tmp_path / "models")]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "the bridge exited"
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the bridge did not start"
            time.sleep(0.2)
        process.send_signal(signal.SIGSTOP)
        yield url, process
    finally:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        process.wait(timeout=10)


def _session(database: str, url: str) -> psycopg.Connection:
    session = psycopg.connect(database, autocommit=True)
    session.execute(f"SET sqlml.bridge_url = '{url}'")
    session.execute(f"SET sqlml.timeout_ms = {PATIENT_TIMEOUT_MS}")
    return session


def test_statement_timeout_ends_a_call_to_a_stopped_bridge(
    database: str, frozen_bridge: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, process = frozen_bridge
    with _session(database, url) as session:
        session.execute("SET statement_timeout = '1s'")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            session.execute("SELECT ml.health()")
        elapsed = time.monotonic() - started
        assert elapsed < 3.0, f"took {elapsed:.1f} s; sqlml.timeout_ms alone would take 40 s"
        session.execute("RESET statement_timeout")
        assert session.execute("SELECT 1").fetchone() == (1,)  # the session is usable
        process.send_signal(signal.SIGCONT)  # the bridge is back: the same session reaches it
        assert session.execute("SELECT ml.health()->>'status'").fetchone() == ("ready",)


def test_pg_cancel_backend_ends_a_call_to_a_stopped_bridge(
    conn: psycopg.Connection, database: str, frozen_bridge: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, _process = frozen_bridge
    outcome: dict[str, object] = {}
    with _session(database, url) as session:
        pid = session.info.backend_pid

        def call() -> None:
            started = time.monotonic()
            try:
                session.execute("SELECT (ml.sentiment('hello')).label")
            except psycopg.Error as error:
                outcome["error"] = error
            outcome["seconds"] = time.monotonic() - started

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(1.0)
        assert caller.is_alive(), f"the call ended before the cancel: {outcome}"
        cancelled_at = time.monotonic()
        assert conn.execute("SELECT pg_cancel_backend(%s)", [pid]).fetchone() == (True,)
        caller.join(timeout=PATIENT_TIMEOUT_MS / 1000)
        assert isinstance(outcome.get("error"), psycopg.errors.QueryCanceled), outcome
        assert time.monotonic() - cancelled_at < 2.0
        assert session.execute("SELECT 1").fetchone() == (1,)
