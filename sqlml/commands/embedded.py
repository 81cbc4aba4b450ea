"""CLI commands that run SQL with the `ml` functions in this process: `demo`, `query`, `models`.

`--bridge URL` points the same functions at a running bridge instead of in-process models. Every
failure prints one line (code, message, hint) and exits with status 1, never a traceback.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import duckdb
import pyarrow as pa
import typer
from rich.console import Console
from rich.table import Table

from sqlml import config
from sqlml.bridge.client import LocalClient, ModelClient
from sqlml.errors import ERRORS_BY_CODE, SqlmlError

FORMATS = ("table", "csv", "json")
_UDF_ERROR = re.compile(r"Python exception occurred while executing the UDF: (\w+): (.*)", re.S)
_CLASS_CODES = {cls.__name__: code for code, cls in ERRORS_BY_CODE.items()}

BridgeOption = Annotated[
    str | None, typer.Option("--bridge", help="bridge URL (default: run the models in this process)")
]
TokenOption = Annotated[str | None, typer.Option("--token", help="bearer token for --bridge", envvar="SQLML_TOKEN")]


def register(app: typer.Typer) -> None:
    app.command("query")(query)  # `sqlml models` (this module's `models`) is the group in sqlml.commands.models
    app.command("demo")(demo)


def query(
    sql: Annotated[str, typer.Argument(help="the SQL to run; the ml.* functions are available")],
    db: Annotated[Path | None, typer.Option("--db", help="DuckDB file (default: the demo database)")] = None,
    output: Annotated[str, typer.Option("--format", "-f", help="table, csv or json")] = "table",
    bridge: BridgeOption = None,
    token: TokenOption = None,
) -> None:
    """Run SQL on DuckDB with the ml.* functions and print the rows."""
    with cli_errors():
        if output not in FORMATS:
            raise SqlmlError(f"unknown format {output!r}", hint=f"use one of {', '.join(FORMATS)}")
        from sqlml.udfs import register as register_functions

        con = open_database(db)
        try:
            register_functions(con, make_client(bridge, token))
            relation = con.sql(sql)
            if relation is None:  # a statement without rows (CREATE, INSERT, ...)
                return
            print_rows(relation.to_arrow_table(), output)
        finally:
            con.close()


def models(bridge: BridgeOption = None, token: TokenOption = None) -> None:
    """List the models in the store (or on the bridge)."""
    with cli_errors():
        rows = make_client(bridge, token).models()
        table = Table(header_style="bold")
        for column in ("name", "version", "aliases", "task", "key metrics", "loaded"):
            table.add_column(column, justify="right" if column == "version" else "left")
        for row in rows:
            aliases = ", ".join(f"{alias}→{version}" for alias, version in sorted(row.get("aliases", {}).items()))
            metrics = ", ".join(f"{k}={v:.3g}" for k, v in list(row.get("metrics", {}).items())[:3])
            table.add_row(
                row["name"], str(row["version"]), aliases, str(row.get("task", "")), metrics,
                "yes" if row.get("loaded") else "no",
            )  # fmt: skip
        if not rows:
            Console().print("no models yet: run [bold]sqlml demo[/] to train the demo models")
            return
        Console().print(table)


def demo(
    rebuild: Annotated[bool, typer.Option("--rebuild", help="rebuild the demo database")] = False,
    postgres: Annotated[
        str | None,
        typer.Option(
            "--postgres",
            metavar="DSN",
            help="run the demo in this PostgreSQL database instead (created if missing), models on --bridge",
        ),
    ] = None,
    bridge: Annotated[
        str | None,
        typer.Option("--bridge", help="with --postgres: the running bridge (default http://127.0.0.1:8765)"),
    ] = None,
    token: TokenOption = None,
) -> None:
    """Build the demo database, train the demo models once, and run showcase SQL (DuckDB, or PostgreSQL)."""
    with cli_errors():
        if postgres is None:
            if bridge:
                raise typer.BadParameter("goes with --postgres DSN", param_hint="--bridge")
            from sqlml.demo import run_demo

            run_demo(Console(), rebuild=rebuild)
            return
        _postgres_demo(postgres, bridge, token, rebuild)


def _postgres_demo(dsn: str, bridge: str | None, token: str | None, rebuild: bool) -> None:
    import psycopg

    from sqlml.demo_postgres import DEFAULT_BRIDGE, describe_postgres_error, run_postgres_demo

    try:
        run_postgres_demo(dsn, bridge_url=bridge or DEFAULT_BRIDGE, token=token, console=Console(), rebuild=rebuild)
    except psycopg.Error as exc:
        fail("postgres_error", *describe_postgres_error(exc))


# -- helpers ---------------------------------------------------------------------------------


def make_client(bridge: str | None, token: str | None) -> ModelClient:
    if bridge:
        from sqlml.bridge.http_client import BridgeClient

        client: ModelClient = BridgeClient(bridge, token=token)
        return client
    return LocalClient()


def open_database(db: Path | None) -> duckdb.DuckDBPyConnection:
    """The `--db` file, else the demo database if it exists, else an in-memory database.

    A file another process holds open for writing is opened read-only instead.
    """
    if db is None:
        demo_db = config.demo_db_path()
        if not demo_db.exists():
            return duckdb.connect()
        db = demo_db
    try:
        return duckdb.connect(str(db))
    except duckdb.IOException:
        return duckdb.connect(str(db), read_only=True)


def print_rows(result: pa.Table, output: str, write: Callable[[str], Any] | None = None) -> None:
    write = write or sys.stdout.write
    if output == "csv":
        writer = csv.writer(_Lines(write), lineterminator="\n")
        writer.writerow(result.column_names)
        for row in result.to_pylist():
            writer.writerow([_plain(v) for v in row.values()])
    elif output == "json":
        write(json.dumps(result.to_pylist(), default=str, indent=2) + "\n")
    else:
        from sqlml.demo import rich_table

        Console().print(rich_table(result, caption=f"{result.num_rows} rows"))


class _Lines:
    def __init__(self, write: Callable[[str], Any]):
        self.write = write


def _plain(value: Any) -> Any:
    """CSV cells: nested values as JSON, NULL as empty."""
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return "" if value is None else value


@contextmanager
def cli_errors() -> Iterator[None]:
    """Print any error as one line and exit 1."""
    try:
        yield
    except SqlmlError as exc:
        fail(exc.code, exc.message, exc.hint)
    except duckdb.Error as exc:
        fail(*describe_duckdb_error(exc))
    except (OSError, ValueError) as exc:
        fail("error", f"{type(exc).__name__}: {exc}", None)


def describe_duckdb_error(exc: duckdb.Error) -> tuple[str, str, str | None]:
    """(code, message, hint) of a DuckDB error, recovering sqlml's error code from a UDF failure."""
    text = str(exc).strip()
    match = _UDF_ERROR.search(text)
    if match:
        class_name, message = match.group(1), match.group(2).strip()
        hint = None
        if message.endswith(")") and " (hint: " in message:
            message, _, hint = message[:-1].partition(" (hint: ")
        return _CLASS_CODES.get(class_name, "model_error"), message, hint
    kind = type(exc).__name__.removesuffix("Exception").removesuffix("Error") or "sql"
    code = re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower() + "_error"
    message = " ".join(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("LINE"))
    return code, message, None


def fail(code: str, message: str, hint: str | None) -> None:
    line = f"error [{code}]: {message}" + (f" (hint: {hint})" if hint else "")
    typer.echo(line, err=True)
    raise typer.Exit(1)
