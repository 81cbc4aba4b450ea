"""Fixtures of the chaos tests: one real bridge process that a test may SIGKILL and start again on
the same port, home and store (so the extension's stored token, bound to the bridge URL, stays
valid), a scratch database with the extension and a 3,000-row `leads` table, the lead model's scores
computed once on a calm bridge, a seeded random generator per test, and the checks every scenario
ends with: the store is intact and the bridge answers /readyz.

The store holds the tiny real models of tests/postgres/conftest.py (a 4-feature XGBoost
`lead_score`, runtime `xgboost`, and a fake sentiment runtime loaded via SQLML_PLUGINS).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from sqlml.bridge.jobs.store import JobStore
from sqlml.bridge.registry import ALIASES, MANIFEST, STAGING_PREFIX, TMP_SUFFIX, Registry
from tests.postgres.conftest import ADMIN_TOKEN, PG_DSN, ROOT, free_port, publish_models
from tests.postgres.conftest import HERE as POSTGRES_TESTS

LEADS = 3_000
LEAD_QUERY = "SELECT id, mostype, maothers, mgemleef, ppersaut FROM leads"
PREDICT_SQL = f"SELECT key, result FROM ml.predict_query('lead_score', '{LEAD_QUERY}', 'id')"
BATCH_SIZE = 100  # 30 bridge requests per statement: a kill lands mid-statement, not only between them
SQLML = Path(sys.executable).parent / "sqlml"


@dataclass
class ChaosBridge:
    """`sqlml serve` on a fixed port over one home and store, started and killed at will."""

    home: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store(self) -> Path:
        return self.home / "models"

    @property
    def log(self) -> Path:
        return self.home / "bridge.log"

    @property
    def jobs(self) -> JobStore:
        return JobStore(self.home / "jobs" / "jobs.sqlite")

    def start(self, *args: str, timeout: float = 60.0) -> ChaosBridge:
        assert self.process is None or self.process.poll() is not None, "the bridge is running"
        self.args = args
        env = {
            **os.environ,
            "SQLML_HOME": str(self.home),
            "SQLML_PLUGINS": "fake_runtimes",
            "PYTHONPATH": os.pathsep.join([str(POSTGRES_TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "SQLML_TOKENS": json.dumps({ADMIN_TOKEN: ["admin", "predict:*"]}),
        }
        command = [str(SQLML), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--store", str(self.store),
                   "--log-level", "warning", *args]  # fmt: skip
        with self.log.open("ab") as log:
            log.write(f"\n--- start {self.starts} {' '.join(args)}\n".encode())
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"the bridge exited: {self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bridge did not become ready in {timeout:g} s")
            time.sleep(0.1)
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL, as the OOM killer would: no shutdown hook runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, *args: str) -> ChaosBridge:
        self.stop()
        return self.start(*args)

    def children(self, module: str) -> list[int]:
        """Child processes of any of the bridge's threads whose command line names `module`."""
        found = []
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                pids = (task / "children").read_text().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    if module.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                        found.append(int(pid))
                except OSError:
                    continue
        return sorted(found)

    def get(self, path: str) -> Any:
        answer = httpx.get(self.url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
        answer.raise_for_status()
        return answer.json()


@pytest.fixture(scope="session")
def chaos_bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosBridge]:
    home = tmp_path_factory.mktemp("chaos_home")
    publish_models(home / "models")
    bridge = ChaosBridge(home).start()
    try:
        yield bridge
    finally:
        bridge.stop()


@pytest.fixture
def bridge(chaos_bridge: ChaosBridge) -> Iterator[ChaosBridge]:
    """The chaos bridge, running with default arguments when the test starts."""
    if chaos_bridge.args or not (chaos_bridge.process and chaos_bridge.process.poll() is None):
        chaos_bridge.restart()
    yield chaos_bridge
    if chaos_bridge.process is None or chaos_bridge.process.poll() is not None:
        chaos_bridge.start()  # a failed test leaves a bridge for the next one


@pytest.fixture(scope="session")
def chaos_db(chaos_bridge: ChaosBridge) -> Iterator[str]:
    """DSN of a scratch database with the extension pointed at the chaos bridge and table `leads`."""
    subprocess.run(["make", "-C", str(ROOT / "extension"), "install"], check=True, capture_output=True)
    name = f"sqlml_chaos_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    dsn = f"{PG_DSN} dbname={name}"
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION sqlml CASCADE")
            conn.execute(f"ALTER DATABASE \"{name}\" SET sqlml.bridge_url = '{chaos_bridge.url}'")  # type: ignore[arg-type]
            conn.execute(f"ALTER DATABASE \"{name}\" SET sqlml.timeout_ms = '10000'")  # type: ignore[arg-type]
            conn.execute(f"ALTER DATABASE \"{name}\" SET sqlml.batch_size = '{BATCH_SIZE}'")  # type: ignore[arg-type]
            conn.execute(f"SET sqlml.bridge_url = '{chaos_bridge.url}'")  # type: ignore[arg-type]
            conn.execute("SELECT ml.set_token(%s)", (ADMIN_TOKEN,))
            conn.execute(
                "CREATE TABLE leads AS SELECT g AS id, (g % 10)::bigint AS mostype, (g % 3)::bigint AS maothers,"
                f" (g % 5)::bigint AS mgemleef, (g % 7)::bigint AS ppersaut FROM generate_series(1, {LEADS}) g"
            )
            conn.execute("ALTER TABLE leads ADD PRIMARY KEY (id)")
        yield dsn
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def connect(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


@pytest.fixture(scope="session")
def expected_scores(chaos_db: str, chaos_bridge: ChaosBridge) -> dict[str, float]:
    """Key -> probability of every lead, scored once by a calm bridge (and kept as table `expected`)."""
    with connect(chaos_db) as conn:
        conn.execute(f"CREATE TABLE expected AS {PREDICT_SQL}")  # type: ignore[arg-type]
        rows = conn.execute("SELECT key, (result->>'probability')::float8 FROM expected").fetchall()
    scores = {key: probability for key, probability in rows}
    assert len(scores) == LEADS and all(0.0 <= p <= 1.0 for p in scores.values())
    return scores


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A seeded generator; the seed is printed (shown on failure) and SQLML_CHAOS_SEED replays it."""
    seed = int(os.environ.get("SQLML_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"chaos seed for {request.node.name}: {seed} (replay with SQLML_CHAOS_SEED={seed})")
    return random.Random(seed)


@dataclass
class Outcome:
    """How one statement run in a thread ended: `error` is None when it completed."""

    error: BaseException | None = None
    seconds: float = 0.0


def run_in_thread(statement: Callable[[], Any]) -> tuple[threading.Thread, Outcome]:
    outcome = Outcome()

    def target() -> None:
        started = time.monotonic()
        try:
            statement()
        except BaseException as exc:  # the test checks the outcome
            outcome.error = exc
        outcome.seconds = time.monotonic() - started

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def check_results(conn: psycopg.Connection[Any], table: str, expected: dict[str, float]) -> None:
    """Exactly one result per lead, none missing, each equal to the calm bridge's score."""
    duplicated = conn.execute(
        f"SELECT key, count(*) FROM {table} GROUP BY key HAVING count(*) > 1 LIMIT 5"  # type: ignore[arg-type]
    ).fetchall()
    assert duplicated == [], f"duplicated results: {duplicated}"
    rows = conn.execute(f"SELECT key, (result->>'probability')::float8 FROM {table}").fetchall()  # type: ignore[arg-type]
    got = dict(rows)
    missing = sorted(set(expected) - set(got), key=int)
    assert not missing, f"{len(missing)} results missing, e.g. {missing[:5]}"
    assert set(got) == set(expected), f"unexpected keys: {sorted(set(got) - set(expected))[:5]}"
    wrong = [(key, got[key], expected[key]) for key in expected if got[key] != expected[key]]
    assert not wrong, f"{len(wrong)} results differ from the calm bridge's, e.g. {wrong[:3]}"


def debris(store: Path) -> list[Path]:
    """Staging folders and temporary files of writers in the model folders."""
    return sorted(
        entry
        for model in store.iterdir()
        if model.is_dir() and not model.name.startswith(".")
        for entry in model.iterdir()
        if entry.name.startswith(STAGING_PREFIX) or entry.name.endswith(TMP_SUFFIX)
    )


def check_store_intact(store: Path) -> None:
    """Every version folder holds a manifest that parses and validates, every alias points at an
    existing version, and debris (if any) is never served."""
    registry = Registry(store)
    assert registry.corrupt_files() == {}
    for model in sorted(p for p in store.iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions = sorted(int(v.name) for v in model.iterdir() if v.is_dir() and v.name.isdigit())
        for version in versions:
            assert (model / str(version) / MANIFEST).is_file(), f"{model.name}/{version} has no manifest"
            manifest = registry.manifest(model.name, version)
            assert (manifest.name, manifest.version) == (model.name, version)
        assert registry.versions(model.name) == versions
        if (model / ALIASES).exists():
            aliases = json.loads((model / ALIASES).read_text())
            dangling = {alias: v for alias, v in aliases.items() if v not in versions}
            assert not dangling, f"aliases of {model.name} point at missing versions: {dangling}"
    for entry in debris(store):  # staging paths are hidden from listings and resolution
        assert not entry.name.isdigit()


def check_after_scenario(bridge: ChaosBridge) -> None:
    check_store_intact(bridge.store)
    assert bridge.ready(), "the bridge does not answer /readyz"
    listed = {model["name"] for model in bridge.get("/v1/models")["models"]}
    assert {"lead_score", "sentiment"} <= listed


def kill_process(pid: int, group: bool = False) -> None:
    """SIGKILL one process (or its whole group), if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        (os.killpg if group else os.kill)(pid, signal.SIGKILL)
