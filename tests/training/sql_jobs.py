"""Helpers of the SQL training tests: a session on a database with the sqlml extension pointed at a
test bridge, and polling `ml.job` until a job ends."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

BRIDGE_TOKEN = "sql-token"  # the `bridge_url` fixture's bridge accepts it with scope admin


def extension_installed() -> bool:
    sharedir = subprocess.run(["pg_config", "--sharedir"], capture_output=True, text=True, check=False).stdout.strip()
    return (Path(sharedir) / "extension" / "sqlml.control").exists()


@contextmanager
def sql_session(dsn: str, bridge_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection with the extension created, the bridge URL set and the token stored."""
    assert extension_installed(), "the sqlml extension is not installed: run `make -C extension install`"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS sqlml CASCADE")
        conn.execute(f"SET sqlml.bridge_url = '{bridge_url}'")  # type: ignore[arg-type]
        conn.execute("SET sqlml.timeout_ms = 30000")
        conn.execute("SELECT ml.set_token(%s)", [BRIDGE_TOKEN])
        yield conn


def poll_job(conn: psycopg.Connection[Any], job_id: str, timeout_s: float) -> tuple[Any, ...]:
    """`(state, version, promoted, metrics, error)` of the job once it is neither queued nor running."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = conn.execute("SELECT state, version, promoted, metrics, error FROM ml.job(%s)", [job_id]).fetchone()
        assert row is not None
        if row[0] not in ("queued", "running"):
            return tuple(row)
        assert time.monotonic() < deadline, f"job {job_id} still {row[0]} after {timeout_s:g} s"
        time.sleep(0.5)
