"""Docs that cannot drift: every HTTP route, setting, CLI command and SQL function is documented.

Each test reads the surface from the code itself (the bridge's OpenAPI, the settings model, the
typer app, the SQL functions DuckDB and the extension define) and fails naming what the docs miss.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
import typer.main

from sqlml.bridge.app import create_app
from sqlml.bridge.settings import BridgeSettings
from sqlml.cli import app as cli_app

ROOT = Path(__file__).resolve().parents[2]


def read(*names: str) -> str:
    return "\n".join((ROOT / name).read_text() for name in names)


def test_readme_starts_with_the_two_setup_commands() -> None:
    first_block = read("README.md").split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:] if line.strip()]
    assert commands == ["make demo", "make test"]
    assert "make test" in read(".ci/run")


def test_every_http_route_is_documented(tmp_path: Path) -> None:
    app = create_app(BridgeSettings(store=str(tmp_path), auth=False))
    docs = read("docs/http-api.md")
    missing = []
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            if f"{method.upper()} {path}" not in docs:
                missing.append(f"{method.upper()} {path}")
    assert not missing, f"docs/http-api.md does not document: {missing}"


def test_every_bridge_setting_is_documented() -> None:
    docs = read("docs/http-api.md")
    missing = [name for name in BridgeSettings.model_fields if f"`{name}`" not in docs]
    assert not missing, f"docs/http-api.md does not document the settings: {missing}"


def _command_names(group: typer.Typer) -> list[str]:
    click_group = typer.main.get_command(group)
    names = []
    for name, command in click_group.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        if subcommands:
            names.extend(f"{name} {sub}" for sub in subcommands)
        else:
            names.append(name)
    return names


def test_every_cli_command_is_in_the_readme() -> None:
    readme = read("README.md")
    missing = [name for name in _command_names(cli_app) if f"sqlml {name}" not in readme]
    assert not missing, f"README.md does not show these commands: {missing}"


def test_every_duckdb_function_is_documented() -> None:
    from sqlml.bridge.client import LocalClient
    from sqlml.bridge.registry import Registry
    from sqlml.udfs import register

    con = duckdb.connect()
    register(con, LocalClient(Registry("memory://docs-check")))
    names = {
        row[0]
        for row in con.execute("SELECT function_name FROM duckdb_functions() WHERE database_name = 'ml'").fetchall()
    }
    docs = read("README.md", "docs/duckdb.md")
    missing = sorted(n for n in names if not re.search(rf"ml\.{n}\b", docs))
    assert names, "sqlml.udfs.register created no ml.* functions"
    assert not missing, f"README.md/docs/duckdb.md do not document: {missing}"


@pytest.mark.parametrize("doc", ["README.md", "docs/http-api.md"])
def test_docs_exist_and_are_not_empty(doc: str) -> None:
    assert len(read(doc)) > 200


def test_every_runtime_param_is_documented() -> None:
    """Each param a runtime reads from its manifest (`params.get("...")`, or a helper called as
    `helper(params, "...")`) has a row in docs/http-api.md."""
    docs = read("docs/http-api.md")
    read_params = {
        name
        for source in (ROOT / "bridge" / "runtimes").glob("*.py")
        for name in re.findall(r'params(?:\.get\(|, )"([a-z_]+)"', source.read_text())
    }
    assert read_params >= {"precision", "max_length"}
    missing = sorted(name for name in read_params if f"| `{name}` |" not in docs)
    assert not missing, f"docs/http-api.md does not document the runtime params: {missing}"


@pytest.mark.parametrize("doc", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_relative_links_point_at_files_that_exist(doc: str) -> None:
    """`[text](path)` and `[text](path#anchor)` links to files in this repository resolve."""
    base = (ROOT / doc).parent
    targets = re.findall(r"\]\(([^)\s]+)\)", read(doc))
    local = [t.split("#")[0] for t in targets if not re.match(r"^[a-z]+:", t) and not t.startswith("#")]
    missing = sorted({t for t in local if t and not (base / t).exists()})
    assert not missing, f"{doc} links to missing files: {missing}"
