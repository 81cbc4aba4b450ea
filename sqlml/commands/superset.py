"""`sqlml superset up | down | export`: a local Superset with the sqlml dashboards, provisioned in one command.

`up` installs Superset in its own venv (once), initializes its metadata database, prepares the
PostgreSQL database (extension, bridge URL, demo tables, the least-privilege role Superset logs in
as), writes the DuckDB snapshot Superset's DuckDB 1.x driver can open, imports `dashboards/assets`,
and starts Superset on 127.0.0.1:8088. The assets and the provisioning code live in the top-level
`dashboards/` folder.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import typer

from sqlml import config

superset_app = typer.Typer(help="A local Apache Superset with the sqlml dashboards.", no_args_is_help=True)


def dashboards_package() -> ModuleType:
    """`sqlml.dashboards` (the repository's `dashboards/` folder), importable from a source checkout."""
    try:
        return importlib.import_module("sqlml.dashboards")
    except ModuleNotFoundError:
        pass
    # The editable install links sqlml/ into place; the real file sits in the checkout next to
    # dashboards/. Installed elsewhere (the Docker images), SQLML_DASHBOARDS_DIR names the folder.
    folder = Path(os.environ.get("SQLML_DASHBOARDS_DIR") or Path(__file__).resolve().parents[2] / "dashboards")
    spec = importlib.util.spec_from_file_location(
        "sqlml.dashboards", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None or not folder.is_dir():
        raise typer.BadParameter(f"the dashboards folder was not found at {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sqlml.dashboards"] = module
    spec.loader.exec_module(module)
    return module


def dashboards_module(name: str) -> Any:
    dashboards_package()
    return importlib.import_module(f"sqlml.dashboards.{name}")


def default_venv() -> Path:
    """`.venv-superset` next to the checkout's `.venv` when run from source, else under SQLML_HOME."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "dashboards").is_dir() and (checkout / "pyproject.toml").exists():
        return checkout / ".venv-superset"
    return config.home() / "superset" / "venv"


def default_rewrite_command() -> str:
    """The project's own `sqlml sql rewrite`, when the rewriter has landed (else the hook is a no-op)."""
    sqlml_bin = Path(sys.executable).with_name("sqlml")
    try:
        importlib.import_module("sqlml.sql.rewrite")
    except ImportError:
        return ""
    return f"{sqlml_bin} sql rewrite --dialect postgres" if sqlml_bin.exists() else ""


def make_site(port: int, venv: Path | None, home: Path | None) -> Any:
    provision = dashboards_module("provision")
    return provision.SupersetSite(
        home=home or config.home() / "superset",
        venv=venv or default_venv(),
        port=port,
        admin_user=os.environ.get("SQLML_SUPERSET_ADMIN", "admin"),
        admin_password=os.environ.get("SQLML_SUPERSET_PASSWORD", "admin"),
        rewrite_command=default_rewrite_command(),
    )


def write_duckdb_snapshot(target: Path, bridge_url: str | None) -> dict[str, int]:
    """Score the demo data with sqlml's DuckDB functions and write the 1.x-format file Superset reads."""
    import duckdb

    from sqlml import udfs

    snapshot = dashboards_module("snapshot")
    demo = config.demo_db_path()
    if not demo.exists():
        raise typer.BadParameter(f"{demo} does not exist: run `sqlml demo` first")
    con = duckdb.connect()
    client = None
    if bridge_url:
        from sqlml.bridge.http_client import BridgeClient

        client = BridgeClient(bridge_url)
    udfs.register(con, client=client)
    con.execute(f"ATTACH '{demo}' AS demo (READ_ONLY)")
    try:
        summary = snapshot.write_snapshot(con, target)
    finally:
        con.close()
    return dict(summary.tables)


class Step:
    """Prints what each provisioning step did, with the time since the command started."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        typer.echo(f"[{time.monotonic() - self.started:5.1f}s] {message}")


def prepare_postgres(target: Any, login: Any, *, bridge_url: str, demo_db: Path, step: Step) -> str:
    """The PostgreSQL side of provisioning, run as the administrator in `target`; returns Superset's URI.

    Superset itself connects as `login`, a least-privilege role (dashboards/superset_role.py).
    """
    postgres = dashboards_module("postgres")
    counts = postgres.prepare_database(target, demo_db, bridge_url, login, report=step)
    step(f"PostgreSQL {target.database}: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    return str(target.superset_uri(login))


def provision_site(
    site: Any,
    *,
    bridge_url: str,
    snapshot_path: Path,
    postgres_target: Any | None,
    superset_login: Any,
    step: Step,
) -> None:
    """Prepare the data Superset reads (PostgreSQL, DuckDB snapshot) and import the assets into `site`."""
    provision = dashboards_module("provision")
    postgres = dashboards_module("postgres")
    tables = write_duckdb_snapshot(snapshot_path, bridge_url)
    step(f"DuckDB snapshot {snapshot_path}: " + ", ".join(f"{t} {n}" for t, n in tables.items()))
    uris = {provision.DUCKDB_DATABASE_NAME: f"duckdb:///{snapshot_path}?access_mode=read_only"}
    if postgres_target is not None:
        uri = prepare_postgres(
            postgres_target, superset_login, bridge_url=bridge_url, demo_db=config.demo_db_path(), step=step
        )
        synced = postgres.sync_models(postgres_target)
        step(f"ml.sync(): {len(synced)} typed functions; Superset connects as {superset_login.role}")
        uris[provision.POSTGRES_DATABASE_NAME] = uri
    provision.import_assets(site, uris)
    step(f"imported dashboards/assets into {site.url}")


def provision_or_exit(site: Any, **options: Any) -> None:
    """`provision_site`, with a refusal (e.g. a user's object in the way) as a message and exit status 1."""
    provision = dashboards_module("provision")
    try:
        provision_site(site, **options)
    except provision.ProvisionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


BRIDGE_URL = typer.Option(
    os.environ.get("SQLML_BRIDGE_URL", "http://127.0.0.1:8765"), help="the running bridge that serves the models"
)
PG_HOST = typer.Option("127.0.0.1", envvar="PGHOST")
PG_PORT = typer.Option(5432, envvar="PGPORT")
PG_USER = typer.Option(
    "postgres", envvar="PGUSER", help="an administrator for provisioning; Superset connects as --superset-role"
)
PG_PASSWORD = typer.Option("", envvar="PGPASSWORD")
PG_DATABASE = typer.Option("sqlml_demo", help="database created for the dashboards")
SKIP_POSTGRES = typer.Option(False, help="only the DuckDB-backed dashboard")
SUPERSET_ROLE = typer.Option(
    "sqlml_superset", envvar="SQLML_SUPERSET_DB_ROLE", help="the least-privilege role Superset connects as"
)
SUPERSET_DB_PASSWORD = typer.Option(
    "",
    envvar="SQLML_SUPERSET_DB_PASSWORD",
    help="that role's password (none: the server must trust local logins)",
    show_default=False,
)


def postgres_target(host: str, port: int, user: str, password: str, database: str, skip: bool) -> Any | None:
    if skip:
        return None
    postgres = dashboards_module("postgres")
    return postgres.PostgresTarget(host=host, port=port, user=user, password=password, database=database)


def superset_login(role: str, password: str) -> Any:
    return dashboards_module("postgres").SupersetLogin(role=role, password=password)


@superset_app.command("install")
def install(venv: Path | None = typer.Option(None, help="Superset's venv (default .venv-superset)")) -> None:
    """Install Superset in its own venv and prepare its metadata template (needs the package registry).

    `up` does this too; CI runs it before the offline tests, which then only copy the template.
    """
    provision = dashboards_module("provision")
    step = Step()
    site = provision.SupersetSite(home=config.home() / "superset", venv=venv or default_venv())
    step(f"Superset venv {site.venv}: " + ("installed" if provision.ensure_venv(site.venv) else "already current"))
    provision.init_metadata(site)
    step(f"metadata template ready in {site.venv}")


@superset_app.command("up")
def up(
    bridge_url: str = BRIDGE_URL,
    port: int = typer.Option(8088, help="port on 127.0.0.1"),
    pg_host: str = PG_HOST,
    pg_port: int = PG_PORT,
    pg_user: str = PG_USER,
    pg_password: str = PG_PASSWORD,
    pg_database: str = PG_DATABASE,
    skip_postgres: bool = SKIP_POSTGRES,
    superset_role: str = SUPERSET_ROLE,
    superset_db_password: str = SUPERSET_DB_PASSWORD,
    venv: Path | None = typer.Option(None, help="Superset's venv (default .venv-superset)"),
) -> None:
    """Install (once), provision and start Superset with the sqlml dashboards."""
    provision = dashboards_module("provision")
    site = make_site(port, venv, None)
    step = Step()
    step(f"Superset venv: {site.venv}")
    if provision.ensure_venv(site.venv):
        step("installed Superset")
    if provision.init_metadata(site):
        step("initialized Superset's metadata database")
    provision.start(site)
    step(f"Superset answers on {site.url} (log: {site.log_file})")
    provision_or_exit(
        site,
        bridge_url=bridge_url,
        snapshot_path=site.home / "superset.duckdb",
        postgres_target=postgres_target(pg_host, pg_port, pg_user, pg_password, pg_database, skip_postgres),
        superset_login=superset_login(superset_role, superset_db_password),
        step=step,
    )
    typer.echo(f"\n  {site.url}/dashboard/list/   login: {site.admin_user} / {site.admin_password}")
    typer.echo("  stop it with: sqlml superset down")


@superset_app.command("provision")
def provision_command(
    superset_url: str = typer.Option(..., help="a running Superset, e.g. http://superset:8088"),
    snapshot: Path = typer.Option(..., help="where to write the DuckDB file; Superset must see the same path"),
    bridge_url: str = BRIDGE_URL,
    pg_host: str = PG_HOST,
    pg_port: int = PG_PORT,
    pg_user: str = PG_USER,
    pg_password: str = PG_PASSWORD,
    pg_database: str = PG_DATABASE,
    skip_postgres: bool = SKIP_POSTGRES,
    superset_role: str = SUPERSET_ROLE,
    superset_db_password: str = SUPERSET_DB_PASSWORD,
) -> None:
    """Prepare the data and import the dashboards into a Superset that runs elsewhere (docker-compose)."""
    provision = dashboards_module("provision")
    site = provision.SupersetSite(
        home=config.home() / "superset",
        venv=default_venv(),
        base_url=superset_url,
        admin_user=os.environ.get("SQLML_SUPERSET_ADMIN", "admin"),
        admin_password=os.environ.get("SQLML_SUPERSET_PASSWORD", "admin"),
    )
    provision_or_exit(
        site,
        bridge_url=bridge_url,
        snapshot_path=snapshot,
        postgres_target=postgres_target(pg_host, pg_port, pg_user, pg_password, pg_database, skip_postgres),
        superset_login=superset_login(superset_role, superset_db_password),
        step=Step(),
    )


@superset_app.command("down")
def down(port: int = typer.Option(8088)) -> None:
    """Stop the Superset that `sqlml superset up` started."""
    provision = dashboards_module("provision")
    site = make_site(port, None, None)
    typer.echo("stopped Superset" if provision.stop(site) else "Superset was not running")


@superset_app.command("export")
def export(port: int = typer.Option(8088)) -> None:
    """Write the running Superset's dashboards back into dashboards/assets (after editing them in the UI)."""
    provision = dashboards_module("provision")
    site = make_site(port, None, None)
    written = provision.write_assets(provision.export_dashboards(site))
    typer.echo(f"wrote {len(written)} files under {provision.ASSETS_DIR}")


def register(app: typer.Typer) -> None:
    app.add_typer(superset_app, name="superset")
