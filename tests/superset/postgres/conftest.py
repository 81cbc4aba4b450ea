"""The whole stack for the browser test, started the way a user starts it: `sqlml superset up`.

PostgreSQL is the host's (see .ci/run); the test database is created by `up` and dropped here. The
bridge serves tiny real models (tests/superset/stack.py) from a private store; `up` installs or
reuses Superset's venv, writes the DuckDB snapshot, prepares PostgreSQL, imports the assets and
starts Superset with the SQL mutator wired to the project's own `sqlml sql rewrite`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sqlml.bridge.registry import Registry
from tests.superset import stack

TEST_DATABASE = "sqlml_superset_test"
SQLML = str(Path(sys.executable).with_name("sqlml"))


@dataclass
class Stack:
    site: Any
    bridge_url: str
    up_output: str


@pytest.fixture(scope="session")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[stack.BridgeProcess, Path, Path]]:
    work = tmp_path_factory.mktemp("superset-stack")
    power = stack.synthetic_power()
    demo_db = stack.build_demo_db(work / "demo.duckdb", power)
    stack.publish_tiny_models(Registry(work / "store"), work, power)
    process = stack.BridgeProcess(work / "store", work / "bridge.log")
    try:
        process.wait_ready()
        yield process, demo_db, work / "store"
    finally:
        process.stop()


@pytest.fixture(scope="session")
def full_stack(
    provision: Any,
    superset_venv: Path,
    bridge: tuple[stack.BridgeProcess, Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    bridge_process, demo_db, store = bridge
    home = tmp_path_factory.mktemp("sqlml-home")
    shutil.copyfile(demo_db, home / "demo.duckdb")
    env = {**os.environ, "SQLML_HOME": str(home), "SQLML_STORE": str(store), "SQLML_SUPERSET_VENV": str(superset_venv)}
    port = stack.free_port()
    up = [SQLML, "superset", "up", "--port", str(port), "--bridge-url", bridge_process.url]
    up += ["--pg-database", TEST_DATABASE, "--venv", str(superset_venv)]
    site = provision.SupersetSite(home=home / "superset", venv=superset_venv, port=port)
    try:
        completed = subprocess.run(up, env=env, capture_output=True, text=True, timeout=900, check=False)
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
        yield Stack(site=site, bridge_url=bridge_process.url, up_output=completed.stdout)
    finally:
        subprocess.run([SQLML, "superset", "down", "--port", str(port)], env=env, check=False, timeout=60)
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)")
