"""`sqlml serve`: run the bridge (uvicorn underneath, graceful shutdown on SIGTERM/SIGINT)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: str | None = typer.Option(None, help="interface to bind [env SQLML_HOST, default 127.0.0.1]"),
    port: int | None = typer.Option(None, help="port [env SQLML_PORT, default 8765]"),
    store: str | None = typer.Option(None, help="model store path or fsspec URL [env SQLML_STORE]"),
    memory_budget: str | None = typer.Option(None, help="e.g. 2GB; LRU eviction above it [env SQLML_MEMORY_BUDGET]"),
    no_auth: bool = typer.Option(False, "--no-auth", help="accept requests without a token (demo only)"),
    no_batching: bool = typer.Option(False, "--no-batching", help="turn dynamic batching off (benchmarks)"),
    model_processes: str | None = typer.Option(
        None,
        help='runtimes whose models each run in a process of their own, e.g. "sentiment" or "*" '
        "[env SQLML_MODEL_PROCESSES]",
    ),
    preload: str | None = typer.Option(
        None,
        help='models to load in the background at start, e.g. "sentiment,lead_scoring", or "*" for every '
        "model; /readyz answers 503 until they are loaded [env SQLML_PRELOAD]",
    ),
    pin: str | None = typer.Option(
        None,
        help='models never evicted under --memory-budget, e.g. "sentiment"; preloaded at start too [env SQLML_PIN]',
    ),
    config: Path | None = typer.Option(None, help="JSON or YAML settings file [env SQLML_BRIDGE_CONFIG]"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
) -> None:
    """Run the bridge: the HTTP service that hosts the models."""
    import uvicorn

    from sqlml.bridge.app import create_app
    from sqlml.bridge.settings import BridgeSettings

    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "store": store,
        "memory_budget": memory_budget,
        "preload": preload,  # comma-separated, split by the settings
        "pin": pin,
    }
    if no_auth:
        overrides["auth"] = False
    if no_batching:
        overrides["batching"] = False
    if model_processes is not None:
        overrides["model_processes"] = model_processes  # comma-separated, split by the settings
    settings = BridgeSettings.load(config, None, **overrides)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.auth and not settings.tokens:
        settings = settings.model_copy(update={"tokens": {first_run_token(): ["admin"]}})
        url = f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '::') else settings.host}:{settings.port}"
        typer.echo(
            f"no tokens configured (SQLML_TOKENS): serving with the admin token in {token_file()}\n"
            f"  PostgreSQL: SELECT ml.set_token('{first_run_token()}', NULL, '{url}');\n"
            f"  clients:    --token {first_run_token()}  (or SQLML_TOKEN)",
            err=True,
        )
    typer.echo(f"sqlml bridge on http://{settings.host}:{settings.port} (store {settings.store})", err=True)
    if settings.preload:
        typer.echo(f"preloading {', '.join(settings.preload)}; /readyz answers 503 until they are loaded", err=True)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,  # per-request logging costs more than a fast predict; use /metrics
        timeout_graceful_shutdown=10,
    )


def token_file() -> Path:
    from sqlml import config

    return config.home() / "bridge-token"


def first_run_token() -> str:
    """The admin token of a bridge started without tokens: made once, kept readable by its owner
    only in `$SQLML_HOME/bridge-token`, and reused by later starts (so a stored ml.set_token holds)."""
    import secrets

    path = token_file()
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "sqlml-" + secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def main() -> None:
    """`python -m sqlml.commands.serve`: the same command without the console script or the other
    commands' dependencies (a GPU machine with a bare Python runs the bridge this way)."""
    typer.run(serve)


if __name__ == "__main__":
    main()
