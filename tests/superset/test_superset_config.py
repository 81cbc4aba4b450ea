"""superset_config.py: the secret comes from the environment; the rewriting cursor batches or stays out of the way."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from tests.superset.stack import REPO

CONFIG = REPO / "dashboards" / "superset_config.py"


def load_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> ModuleType:
    monkeypatch.setenv("SQLML_SUPERSET_HOME", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location(f"superset_config_{tmp_path.name}", CONFIG)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_refuses_to_start_without_a_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SUPERSET_SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="SUPERSET_SECRET_KEY"):
        load_config(monkeypatch, tmp_path)


def test_metadata_lives_in_the_configured_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = load_config(monkeypatch, tmp_path, SUPERSET_SECRET_KEY="s" * 40)
    assert config.SECRET_KEY == "s" * 40
    assert f"sqlite:///{tmp_path / 'superset.db'}" == config.SQLALCHEMY_DATABASE_URI


QUERY = "SELECT (ml.sentiment(body)).label FROM reviews"


def fake_rewriter(tmp_path: Path, body: str) -> str:
    script = tmp_path / "rewriter.py"
    script.write_text(body)
    return f"{sys.executable} {script}"


class RecordingCursor:
    """A DBAPI cursor that keeps what it was asked to execute."""

    def __init__(self) -> None:
        self.executed: list[tuple[object, object]] = []

    def execute(self, query: object, vars: object = None) -> None:
        self.executed.append((query, vars))


def run_through_cursor(config: ModuleType, *statements: str) -> list[object]:
    cursor = config.rewriting_cursor(RecordingCursor)()
    for statement in statements:
        cursor.execute(statement)
    return [query for query, _ in cursor.executed]


def test_the_cursor_runs_statements_through_the_rewriter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    command = fake_rewriter(tmp_path, "import sys; print(sys.stdin.read().replace('ml.sentiment', 'ml.batched'))")
    config = load_config(monkeypatch, tmp_path, SUPERSET_SECRET_KEY="k" * 40, SQLML_REWRITE_COMMAND=command)
    assert run_through_cursor(config, QUERY, "SELECT 1") == ["SELECT (ml.batched(body)).label FROM reviews", "SELECT 1"]
    # With parameters the text holds placeholders (and doubled %): it goes to the driver as it came.
    cursor = config.rewriting_cursor(RecordingCursor)()
    cursor.execute(QUERY + " WHERE product = %(p)s", {"p": "x"})
    assert cursor.executed == [(QUERY + " WHERE product = %(p)s", {"p": "x"})]


def test_the_cursor_caches_rewrites(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    body = f"import sys; open({str(calls)!r}, 'a').write('x'); print(sys.stdin.read())"
    config = load_config(
        monkeypatch, tmp_path, SUPERSET_SECRET_KEY="k" * 40, SQLML_REWRITE_COMMAND=fake_rewriter(tmp_path, body)
    )
    assert run_through_cursor(config, QUERY, QUERY, QUERY) == [QUERY] * 3
    assert calls.read_text() == "x"


@pytest.mark.parametrize(
    "rewriter_body",
    ["import sys; sys.exit(3)", "import time; time.sleep(30)", "print('')"],
    ids=["fails", "hangs", "empty"],
)
def test_the_cursor_runs_the_query_unchanged_when_the_rewriter_misbehaves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rewriter_body: str
) -> None:
    command = fake_rewriter(tmp_path, rewriter_body)
    config = load_config(
        monkeypatch,
        tmp_path,
        SUPERSET_SECRET_KEY="k" * 40,
        SQLML_REWRITE_COMMAND=command,
        SQLML_REWRITE_TIMEOUT_S="2",
    )
    assert run_through_cursor(config, QUERY) == [QUERY]


def fake_url(backend: str, driver: str) -> SimpleNamespace:
    return SimpleNamespace(get_backend_name=lambda: backend, get_driver_name=lambda: driver)


def test_connections_stay_as_they_are_without_postgres_or_sqlml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    command = fake_rewriter(tmp_path, "import sys; print(sys.stdin.read())")
    config = load_config(monkeypatch, tmp_path, SUPERSET_SECRET_KEY="k" * 40, SQLML_REWRITE_COMMAND=command)
    # DuckDB answers ml.* from its snapshot; psycopg 3 has no psycopg2 cursor_factory to hook.
    for url in (fake_url("duckdb", "duckdb_engine"), fake_url("postgresql", "psycopg")):
        assert config.DB_CONNECTION_MUTATOR(url, {"connect_args": {}}, None, None, None) == (url, {"connect_args": {}})
    without_rewriter = load_config(
        monkeypatch, tmp_path, SUPERSET_SECRET_KEY="k" * 40, SQLML_REWRITE_COMMAND="/nonexistent/sqlml sql rewrite"
    )
    assert run_through_cursor(without_rewriter, QUERY) == [QUERY]
    url = fake_url("postgresql", "psycopg2")
    assert without_rewriter.DB_CONNECTION_MUTATOR(url, {"connect_args": {}}, None, None, None) == (
        url,
        {"connect_args": {}},
    )


# Superset's venv: its SQLAlchemy URL and psycopg2, as Superset calls the hook for an engine.
HOOK_CHECK = """
import importlib.util, json, sys
import psycopg2.extensions
from sqlalchemy.engine import make_url
spec = importlib.util.spec_from_file_location("superset_config", sys.argv[1])
config = importlib.util.module_from_spec(spec)
spec.loader.exec_module(config)
found = {}
for uri in ("postgresql+psycopg2://u@h/db", "postgresql://u@h/db", "duckdb:///x.duckdb"):
    _, params = config.DB_CONNECTION_MUTATOR(make_url(uri), {"connect_args": {}}, "admin", None, None)
    factory = params["connect_args"].get("cursor_factory")
    found[uri] = factory is not None and issubclass(factory, psycopg2.extensions.cursor)
print(json.dumps(found))
"""


def test_superset_engines_on_postgres_get_the_rewriting_cursor(superset_venv: Path, tmp_path: Path) -> None:
    env = {**os.environ, "SUPERSET_SECRET_KEY": "k" * 40, "SQLML_SUPERSET_HOME": str(tmp_path)}
    env["SQLML_REWRITE_COMMAND"] = fake_rewriter(tmp_path, "import sys; print(sys.stdin.read())")
    completed = subprocess.run(
        [str(superset_venv / "bin/python"), "-c", HOOK_CHECK, str(CONFIG)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads(completed.stdout) == {
        "postgresql+psycopg2://u@h/db": True,
        "postgresql://u@h/db": True,
        "duckdb:///x.duckdb": False,
    }


def test_real_rewriter_batches_a_chart_query() -> None:
    # The command `sqlml superset up` wires in: the project's own rewriter, reading stdin.
    sqlml_bin = Path(sys.executable).with_name("sqlml")
    completed = subprocess.run(
        [str(sqlml_bin), "sql", "rewrite", "--dialect", "postgres"],
        input=f"SELECT count(*) FROM ({QUERY}) AS virtual_table",
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    )
    assert "ml.sentiment_batch" in completed.stdout
