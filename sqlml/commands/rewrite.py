"""`sqlml sql rewrite`: print the batched form of a query read on stdin (the rewriter's CLI door).

The catalog of batchable functions comes from a database with the sqlml extension (`--dsn`, or
SQLML_DSN), else from the models of a bridge (`--bridge`) or of the local store, by the rules of
`ml.sync()`: the built-ins (ml.sentiment and ml.predict) plus one typed function per model. When the query is
left unchanged the reason goes to stderr, so `sqlml sql rewrite < q.sql > out.sql` stays usable.
"""

from __future__ import annotations

import os
import sys

import typer

sql_app = typer.Typer(help="SQL tools: rewrite per-row model calls into batched calls.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(sql_app, name="sql")


@sql_app.command("rewrite")
def rewrite_command(
    dialect: str = typer.Option("postgres", help="engine the query runs on: postgres or duckdb"),
    dsn: str | None = typer.Option(None, help="read the ml.* functions from this database [env SQLML_DSN]"),
    bridge: str | None = typer.Option(None, help="else the models of this bridge (default: the local store)"),
    token: str | None = typer.Option(None, help="bearer token for --bridge", envvar="SQLML_TOKEN"),
) -> None:
    """Read SQL on stdin; print it with per-row ml.* calls batched (unchanged, with the reason, if unsafe)."""
    from sqlml.sql.catalog import Catalog
    from sqlml.sql.rewrite import DIALECTS, rewrite

    if dialect not in DIALECTS:
        raise typer.BadParameter(f"expected one of {', '.join(DIALECTS)}", param_hint="--dialect")
    dsn = dsn or os.environ.get("SQLML_DSN")
    if dsn:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=5) as connection:
            catalog = Catalog.from_connection(connection)
    else:
        from sqlml.commands.embedded import make_client

        catalog = Catalog.from_models(make_client(bridge, token).models())
    result = rewrite(sys.stdin.read(), catalog, dialect=dialect)
    typer.echo(result.sql)
    typer.echo(f"-- sqlml rewrite: {'rewritten' if result.changed else 'unchanged'}: {result.reason}", err=True)
