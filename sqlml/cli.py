"""The `sqlml` command line.

Each area of the project contributes its commands from a module in `sqlml.commands` exposing
`register(app)`, so the CLI stays a thin index of what the project can do.
"""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES = [
    "sqlml.commands.embedded",  # demo, query
    "sqlml.commands.models",  # models (the listing), models import
    "sqlml.commands.serve",  # serve (the bridge)
    "sqlml.commands.rewrite",  # sql rewrite (batch per-row model calls)
    "sqlml.commands.train",  # train, jobs (training jobs on the bridge)
    "sqlml.commands.superset",  # superset up | provision | export | down (dashboards/)
]

app = typer.Typer(
    name="sqlml",
    help="Machine-learning predictions inside SQL (DuckDB, PostgreSQL, Superset).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Machine-learning predictions inside SQL (DuckDB, PostgreSQL, Superset)."""
    # A callback keeps `sqlml <command>` a group even while only one area has registered commands.


def _register_commands() -> None:
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # that area has not landed yet
        module.register(app)


_register_commands()


def main() -> None:
    app()
