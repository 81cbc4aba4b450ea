"""superset_config.py: the secret comes from the environment; the SQL mutator batches or stays out of the way."""

from __future__ import annotations

import importlib.util
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
    assert config.MUTATE_AFTER_SPLIT is True


POSTGRES = SimpleNamespace(backend="postgresql")
DUCKDB = SimpleNamespace(backend="duckdb")
QUERY = "SELECT (ml.sentiment(body)).label FROM reviews"


def fake_rewriter(tmp_path: Path, body: str) -> str:
    script = tmp_path / "rewriter.py"
    script.write_text(body)
    return f"{sys.executable} {script}"


def test_mutator_sends_postgres_queries_through_the_rewriter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    command = fake_rewriter(tmp_path, "import sys; print(sys.stdin.read().replace('ml.sentiment', 'ml.batched'))")
    config = load_config(monkeypatch, tmp_path, SUPERSET_SECRET_KEY="k" * 40, SQLML_REWRITE_COMMAND=command)
    assert config.SQL_QUERY_MUTATOR(QUERY, database=POSTGRES) == "SELECT (ml.batched(body)).label FROM reviews"
    # DuckDB answers ml.* from its snapshot macros, and plain SQL never pays for a subprocess.
    assert config.SQL_QUERY_MUTATOR(QUERY, database=DUCKDB) == QUERY
    assert config.SQL_QUERY_MUTATOR("SELECT 1", database=POSTGRES) == "SELECT 1"


def test_mutator_caches_rewrites(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    body = f"import sys; open({str(calls)!r}, 'a').write('x'); print(sys.stdin.read())"
    config = load_config(
        monkeypatch, tmp_path, SUPERSET_SECRET_KEY="k" * 40, SQLML_REWRITE_COMMAND=fake_rewriter(tmp_path, body)
    )
    for _ in range(3):
        assert config.SQL_QUERY_MUTATOR(QUERY, database=POSTGRES) == QUERY
    assert calls.read_text() == "x"


@pytest.mark.parametrize(
    "rewriter_body",
    ["import sys; sys.exit(3)", "import time; time.sleep(30)", "print('')"],
    ids=["fails", "hangs", "empty"],
)
def test_mutator_runs_the_query_unchanged_when_the_rewriter_misbehaves(
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
    assert config.SQL_QUERY_MUTATOR(QUERY, database=POSTGRES) == QUERY


def test_mutator_is_a_no_op_without_sqlml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = load_config(
        monkeypatch, tmp_path, SUPERSET_SECRET_KEY="k" * 40, SQLML_REWRITE_COMMAND="/nonexistent/sqlml sql rewrite"
    )
    assert config.SQL_QUERY_MUTATOR(QUERY, database=POSTGRES) == QUERY


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
