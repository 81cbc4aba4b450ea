"""Docs that run: every fenced block of README.md and docs/*.md is run here, or says why not.

The line right before each fence (``` or ~~~, any language tag or none) carries a marker:

    <!-- doc: run duckdb -->             SQL on the demo's DuckDB database, the ml.* functions registered
    <!-- doc: run postgres -->           SQL in the demo's PostgreSQL database (`sqlml demo --postgres`),
                                         in one transaction that is rolled back; a block of `=> SQL`
                                         lines is a psql transcript, its other lines the output expected
    <!-- doc: run duckdb postgres -->    SQL on both engines
    <!-- doc: run shell -->              `bash -euo pipefail` (add `postgres` when it reaches PostgreSQL)
    <!-- doc: run python -->             Python, statement by statement (add `postgres` likewise)
    <!-- doc: not run: REASON -->        not runnable here, and why (the reason is required)

What runs, runs against stand-ins of the demo's models (conftest.py), with the docs' bridge address
and demo database name replaced by the test's. Besides exit status 0 and no error, a block's stated
results are compared: a one-word comment after a SQL statement is its value (`-- negative`), a JSON
sample in a comment after a shell command is the shape of its output (`# {"status": "ok"}`, see
`doc_blocks.shape_mismatch`), and a Python literal in a comment after an expression is its value
(`...` standing for any text). The stand-in sentiment model says what the real one says for the
texts the docs label (checked by hand; training the real one takes 10 CPU minutes). A doc that is
wrong is fixed; a product that is wrong gets its case in KNOWN_BUGS (strict xfail) until it is fixed.
"""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import tokenize
from pathlib import Path

import duckdb
import psycopg
import pytest

from sqlml.bridge.client import LocalClient
from sqlml.udfs import register

from .conftest import DOC_ROLES, DocBridge, DocDatabase
from .doc_blocks import (
    DOC_FILES,
    MARKER,
    ROOT,
    Block,
    Statement,
    all_blocks,
    matches_with_ellipsis,
    parse_marker,
    read_sample,
    shape_mismatch,
    split_shell,
    split_sql,
    substitute,
    transcript,
)

# "<doc>:<line>-<runner>" -> the product bug that makes the case fail (a strict xfail).
KNOWN_BUGS: dict[str, str] = {}


def _cases(runner: str) -> list[object]:
    """One case per runnable block and runner, named `doc:line-runner`, marked postgres where it needs it."""
    cases = []
    for block in all_blocks():
        try:
            words = parse_marker(block.marker)
        except ValueError:
            continue  # test_every_block_is_run_or_marked_not_run names it
        if isinstance(words, str):
            continue
        first, *rest = words
        if runner in ("duckdb", "postgres"):  # SQL: the words are the engines it runs on
            if first not in ("duckdb", "postgres") or runner not in words:
                continue
            uses_postgres = runner == "postgres"
        elif first == runner:
            uses_postgres = "postgres" in rest
        else:
            continue
        case_id = f"{block.where}-{runner}"
        marks = [pytest.mark.postgres] if uses_postgres else []
        if case_id in KNOWN_BUGS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[case_id]))
        cases.append(pytest.param(block, uses_postgres, id=case_id, marks=marks))
    return cases


def test_every_block_is_run_or_marked_not_run() -> None:
    blocks = all_blocks()
    assert len(blocks) > 40  # the docs were read
    problems = []
    for block in blocks:
        try:
            parse_marker(block.marker)
        except ValueError as error:
            problems.append(f"{block.where}: {error}")
    assert not problems, "blocks neither run nor marked not run:\n" + "\n".join(problems)


@pytest.mark.parametrize("doc", DOC_FILES)
def test_every_marker_sits_on_the_line_before_a_fence(doc: str) -> None:
    lines = (ROOT / doc).read_text().splitlines()
    stray = [
        f"{doc}:{k + 1}"
        for k, line in enumerate(lines)
        if MARKER.match(line) and not (k + 1 < len(lines) and re.match(r"^ {0,3}(```|~~~)", lines[k + 1]))
    ]
    assert not stray, f"markers with no fence right after them: {stray}"


def test_a_block_without_a_marker_is_named_by_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.docs import doc_blocks

    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# x\n\n<!-- doc: not run:  -->\n```sh\nls\n```\n\n~~~\nplain\n~~~\n")
    monkeypatch.setattr(doc_blocks, "ROOT", tmp_path)
    blocks = doc_blocks.read_blocks("README.md")
    assert [(b.where, b.info, b.marker) for b in blocks] == [
        ("README.md:4", "sh", "not run:"),
        ("README.md:8", "", None),
    ]
    with pytest.raises(ValueError, match="needs a reason"):
        parse_marker(blocks[0].marker)
    with pytest.raises(ValueError, match="no <!-- doc"):
        parse_marker(blocks[1].marker)


def test_the_checks_catch_a_doc_that_drifted() -> None:
    """What the block tests compare: stated SQL values, JSON shapes, elided Python values."""
    [first, second] = split_sql("SELECT 'a;b' AS x;  -- negative\nSELECT 2; -- two words here\n")
    assert (first.sql, first.stated, second.stated) == ("SELECT 'a;b' AS x", "negative", None)
    [command] = split_shell('curl -d \'{"a": 1}\' \\\n  $URL/x  # {"status": "ok"}: answers\n')
    assert command.line == 1 and command.stated == '{"status": "ok"}: answers'
    sample = read_sample('{"models": [{"name", "loaded"}, ...], "manifest": {...}, "pinned": false, "version": 1}')
    assert shape_mismatch(sample, {"models": [{"name": "m", "loaded": True}], "manifest": {}, "pinned": False,
                                   "version": 3}) is None  # fmt: skip
    assert "no keys ['loaded']" in str(shape_mismatch(sample, {"models": [{"name": "m"}]}))
    assert "expected a boolean" in str(shape_mismatch(read_sample('{"pinned": false}'), {"pinned": None}))
    assert "expected a list like" in str(shape_mismatch(read_sample('{"loaded": [2]}'), {"loaded": []}))
    assert matches_with_ellipsis("sqlmld1.eyJw....90c9...", "sqlmld1.eyJwIjoi.90c9f4")
    assert not matches_with_ellipsis("sqlmld1.eyJw....3f1c...", "sqlmld1.eyJwIjoi.90c9f4")


# -- running the blocks ------------------------------------------------------------------------


def _replacements(bridge: DocBridge | None, database: DocDatabase | None) -> dict[str, str]:
    replacements = {}
    if bridge:
        replacements[r"\b127\.0\.0\.1:8765\b"] = f"127.0.0.1:{bridge.port}"
    if database:
        replacements[r"\bsqlml_demo\b"] = database.name
    return replacements


def _pg_env(database: DocDatabase) -> dict[str, str]:
    params = psycopg.conninfo.conninfo_to_dict(database.dsn)
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE", "password": "PGPASSWORD"}
    return {names[k]: str(v) for k, v in params.items() if k in names}


def _check_stated(where: str, statement: Statement, rows: list[tuple[object, ...]]) -> None:
    if statement.stated is None:
        return
    values = [str(value) for row in rows for value in row]
    assert values == [statement.stated], (
        f"{where}, line {statement.line}: the doc says {statement.stated!r}, the statement returned {rows!r}\n"
        f"{statement.sql}"
    )


@pytest.mark.parametrize(("block", "uses_postgres"), _cases("duckdb"))
def test_duckdb_block(block: Block, uses_postgres: bool, doc_home: Path, doc_client: LocalClient) -> None:
    with duckdb.connect(str(doc_home / "demo.duckdb"), read_only=True) as con:
        register(con, doc_client)
        for statement in split_sql(block.text):
            try:
                rows = con.execute(statement.sql).fetchall()
            except duckdb.Error as error:
                pytest.fail(f"{block.where}, line {statement.line}: {error}\n{statement.sql}")
            _check_stated(block.where, statement, rows)


ROLES_SQL = "\n".join(
    f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}')"
    f" THEN CREATE ROLE {role}; END IF; END $$;"
    for role in DOC_ROLES
)


@pytest.mark.parametrize(("block", "uses_postgres"), _cases("postgres"))
def test_postgres_block(block: Block, uses_postgres: bool, doc_database: DocDatabase, doc_bridge: DocBridge) -> None:
    text = substitute(block.text, _replacements(doc_bridge, doc_database))
    if (pairs := transcript(text)) is not None:
        for sql, expected in pairs:
            result = subprocess.run(["psql", "-X", doc_database.dsn, "-c", sql], capture_output=True, text=True,
                                    timeout=120, check=False)  # fmt: skip
            _assert_lines_in_order(block.where, expected, (result.stdout + result.stderr).splitlines())
        return
    warnings: list[str] = []
    with psycopg.connect(doc_database.dsn) as conn:
        conn.add_notice_handler(lambda d: warnings.append(d.message_primary) if d.severity == "WARNING" else None)
        try:
            conn.execute(ROLES_SQL)  # the roles the docs name, for this transaction only
            for statement in split_sql(text):
                try:
                    cursor = conn.execute(statement.sql)
                except psycopg.Error as error:
                    pytest.fail(f"{block.where}, line {statement.line}: {error}\n{statement.sql}")
                _check_stated(block.where, statement, cursor.fetchall() if cursor.description else [])
        finally:
            conn.rollback()
    assert not warnings, f"{block.where}: warnings {warnings}"


def _assert_lines_in_order(where: str, expected: list[str], output: list[str]) -> None:
    normalized = [" ".join(line.split()) for line in output]
    at = 0
    for line in expected:
        want = " ".join(line.split())
        try:
            at = normalized.index(want, at) + 1
        except ValueError:
            pytest.fail(f"{where}: the doc shows {line!r}; psql printed:\n" + "\n".join(output))


@pytest.mark.parametrize(("block", "uses_postgres"), _cases("shell"))
def test_shell_block(
    block: Block,
    uses_postgres: bool,
    shell_env: dict[str, str],
    doc_bridge: DocBridge,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Command by command in one `bash -euo pipefail`, each command's output kept for its checks."""
    database = request.getfixturevalue("doc_database") if uses_postgres else None
    env = {**shell_env, **(_pg_env(database) if database else {})}
    commands = split_shell(substitute(block.text, _replacements(doc_bridge, database)))
    outputs = tmp_path
    script = "".join(f"{{ {c.text}\n}} >{outputs}/{k}.out 2>{outputs}/{k}.err\n" for k, c in enumerate(commands))
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=env["PWD"], env=env, capture_output=True,
                            text=True, timeout=300, check=False)  # fmt: skip

    def output(k: int) -> tuple[str, str]:
        out, err = (outputs / f"{k}.out", outputs / f"{k}.err")
        return (out.read_text() if out.exists() else "", err.read_text() if err.exists() else "")

    report = "\n".join(f"$ {c.text}\n{''.join(output(k))}" for k, c in enumerate(commands) if any(output(k)))
    assert result.returncode == 0, f"{block.where}: exit status {result.returncode}\n{report}{result.stderr}"
    for k, command in enumerate(commands):
        out, err = output(k)
        assert "Traceback" not in out + err and "ERROR:" not in err, f"{block.where}: $ {command.text}\n{out}{err}"
        if command.stated:
            try:
                actual = json.loads(out)
            except json.JSONDecodeError:
                pytest.fail(f"{block.where}: the doc shows JSON after `{command.text}`, which printed:\n{out}")
            problem = shape_mismatch(read_sample(command.stated), actual)
            assert problem is None, f"{block.where}, line {command.line}: {problem}\ndoc: {command.stated}\ngot: {out}"


@pytest.mark.parametrize(("block", "uses_postgres"), _cases("python"))
def test_python_block(
    block: Block,
    uses_postgres: bool,
    doc_home: Path,
    doc_client: LocalClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """In this process (so the stand-in runtimes are there), in an empty folder, with SQLML_HOME the demo home."""
    database = request.getfixturevalue("doc_database") if uses_postgres else None
    bridge = request.getfixturevalue("doc_bridge") if uses_postgres else None
    source = substitute(block.text, _replacements(bridge, database))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SQLML_HOME", str(doc_home))
    for name, value in (_pg_env(database) if database else {}).items():
        monkeypatch.setenv(name, value)
    comments = {
        token.start[0]: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    namespace: dict[str, object] = {"__name__": "__main__"}
    for node in ast.parse(source).body:
        stated = _literal(comments.get(node.end_lineno or 0, ""))
        if isinstance(node, ast.Expr) and stated is not None:
            value = eval(compile(ast.Expression(node.value), block.where, "eval"), namespace)
            shown = value if isinstance(value, str) and isinstance(stated, str) else repr(value)
            want = stated if isinstance(stated, str) else repr(stated)
            assert matches_with_ellipsis(want, str(shown)), f"{block.where}: the doc says {want}, got {shown}"
        else:
            exec(compile(ast.Module([node], []), block.where, "exec"), namespace)


def _literal(comment: str) -> object | None:
    try:
        return ast.literal_eval(comment) if comment else None
    except (SyntaxError, ValueError):
        return None  # prose
