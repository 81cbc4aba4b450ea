"""`sqlml train` and `sqlml jobs`: submit training jobs to the bridge and watch them.

`sqlml train` sends a job spec to `POST /v1/jobs` and, unless `--no-wait`, draws a progress bar
from `GET /v1/jobs/{id}` until the job ends (exit 1 if it fails). `sqlml jobs` lists, shows,
streams the logs of, and cancels jobs. The bridge is `--bridge` or `SQLML_BRIDGE_URL` (default
http://127.0.0.1:8765); the token, with the `train` scope, is `--token` or `SQLML_TOKEN`.

`--source` is a DuckDB file, which must lie under one of the bridge's `train_roots`
(`SQLML_TRAIN_ROOTS`, default the bridge's `$SQLML_HOME`), or a PostgreSQL DSN with your own
credentials: an ordinary role granted SELECT on the tables, never a superuser.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from sqlml.bridge.training.common import progress_bar
from sqlml.errors import SqlmlError

DEFAULT_BRIDGE = "http://127.0.0.1:8765"
BridgeOption = Annotated[str, typer.Option("--bridge", envvar="SQLML_BRIDGE_URL", help="bridge URL")]
TokenOption = Annotated[str | None, typer.Option("--token", envvar="SQLML_TOKEN", help="token with the train scope")]

jobs_app = typer.Typer(help="List, show, follow the logs of, and cancel training jobs.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.add_typer(jobs_app, name="jobs")


class JobsClient:
    def __init__(self, bridge: str, token: str | None, timeout: float = 60.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=bridge.rstrip("/"), headers=headers, timeout=timeout)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise SqlmlError(
                f"cannot reach the bridge at {self.http.base_url}: {exc}", hint="is `sqlml serve` running?"
            ) from None
        if response.status_code >= 400:
            try:
                payload = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                payload = {"code": "internal_error", "message": response.text[:500]}
            raise SqlmlError.from_dict(payload, response.status_code)
        return response.json()


def parse_params(items: list[str]) -> dict[str, Any]:
    """`k=v` pairs; values are read as JSON when they parse (numbers, booleans, lists), else text."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {item!r}", param_hint="--param")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def source_of(source: str, query: str) -> dict[str, Any]:
    """A DuckDB file when `source` names an existing file or ends in .duckdb/.db, else a PostgreSQL DSN.

    The file's path is sent resolved (symlinks and `..` followed), as the bridge checks it against
    its training roots."""
    if Path(source).suffix in (".duckdb", ".db") or Path(source).is_file():
        return {"duckdb": str(Path(source).resolve()), "query": query}
    return {"dsn": source, "query": query}


def train(
    model: Annotated[str, typer.Option(help="model name, e.g. lead_score")],
    task: Annotated[str, typer.Option(help="sentiment, lead_scoring (classification) or forecast")],
    query: Annotated[str, typer.Option(help="SELECT returning the features and the target")],
    source: Annotated[
        str, typer.Option(help="PostgreSQL DSN (an ordinary role), or a DuckDB file under the bridge's train_roots")
    ],
    target: Annotated[str, typer.Option(help="the column to predict")],
    feature: Annotated[
        list[str] | None, typer.Option(help="a feature column (repeat; default: all but the target)")
    ] = None,
    backend: Annotated[str, typer.Option(help="local or ray")] = "local",
    workers: Annotated[int, typer.Option(help="Ray workers")] = 1,
    cpus_per_worker: Annotated[float, typer.Option(help="CPUs per Ray worker")] = 1.0,
    gpus: Annotated[int, typer.Option(help="GPUs in all (0: CPU)")] = 0,
    param: Annotated[list[str] | None, typer.Option(help="training parameter k=v (repeat)")] = None,
    promote: Annotated[str, typer.Option(help="never, always or if_better")] = "if_better",
    metric: Annotated[str | None, typer.Option(help="metric if_better compares (default per task)")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow the job until it ends")] = True,
    bridge: BridgeOption = DEFAULT_BRIDGE,
    token: TokenOption = None,
) -> None:
    """Train a model version from a SQL query, on the bridge's local or Ray backend."""
    from sqlml.commands.embedded import cli_errors

    spec = {
        "model": model,
        "task": task,
        "source": source_of(source, query),
        "target": target,
        "features": feature or None,
        "params": parse_params(param or []),
        "resources": {"workers": workers, "cpus_per_worker": cpus_per_worker, "gpus": gpus},
        "backend": backend,
        "promote": promote,
        "metric": metric,
    }
    with cli_errors():
        client = JobsClient(bridge, token)
        job = client.call("POST", "/v1/jobs", json=spec)
        typer.echo(f"job {job['id']} submitted ({model}, {task}, backend {backend})", err=True)
        if not wait:
            typer.echo(job["id"])
            return
        job = follow(client, job["id"])
    show_job(job)
    if job["state"] != "succeeded":
        raise typer.Exit(1)


def follow(client: JobsClient, job_id: str, poll: float = 0.5) -> dict[str, Any]:
    """Poll a job with a progress bar until it is final; returns its last state."""
    with progress_bar(True) as bar:
        task = bar.add_task(f"job {job_id}", total=100)
        while True:
            job: dict[str, Any] = client.call("GET", f"/v1/jobs/{job_id}")
            bar.update(
                task, completed=round(100 * job["progress"]), description=f"{job['state']}: {job['message']}"[:70]
            )
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(poll)


def show_job(job: dict[str, Any]) -> None:
    console = Console()
    table = Table(show_header=False, box=None)
    for key in ("id", "state", "message", "version", "promoted", "created_at", "finished_at", "error"):
        if job.get(key) not in (None, ""):
            table.add_row(key, str(job[key]))
    for name, value in sorted((job.get("metrics") or {}).items()):
        table.add_row(f"metrics.{name}", f"{value:.6g}")
    console.print(table)


@jobs_app.command("list")
def list_jobs(
    state: Annotated[str | None, typer.Option(help="only jobs in this state")] = None,
    limit: int = 50,
    bridge: BridgeOption = DEFAULT_BRIDGE,
    token: TokenOption = None,
) -> None:
    """The most recent jobs, newest first."""
    from sqlml.commands.embedded import cli_errors

    with cli_errors():
        jobs = JobsClient(bridge, token).call(
            "GET", "/v1/jobs", params={"limit": limit, **({"state": state} if state else {})}
        )
    table = Table("id", "model", "task", "backend", "state", "progress", "version", "created")
    for job in jobs["jobs"]:
        spec = job["spec"]
        table.add_row(
            job["id"],
            spec["model"],
            spec["task"],
            spec["backend"],
            job["state"],
            f"{100 * job['progress']:.0f}%",
            str(job["version"] or ""),
            job["created_at"][:19],
        )
    Console().print(table)


@jobs_app.command("show")
def show(job_id: str, bridge: BridgeOption = DEFAULT_BRIDGE, token: TokenOption = None) -> None:
    """State, progress, metrics and version of one job."""
    from sqlml.commands.embedded import cli_errors

    with cli_errors():
        show_job(JobsClient(bridge, token).call("GET", f"/v1/jobs/{job_id}"))


@jobs_app.command("logs")
def logs(
    job_id: str,
    follow_logs: Annotated[bool, typer.Option("--follow", "-f", help="keep streaming until the job ends")] = False,
    bridge: BridgeOption = DEFAULT_BRIDGE,
    token: TokenOption = None,
) -> None:
    """Print (or follow) a job's log."""
    from sqlml.commands.embedded import cli_errors

    with cli_errors():
        client = JobsClient(bridge, token, timeout=None if follow_logs else 60.0)  # type: ignore[arg-type]
        client.call("GET", f"/v1/jobs/{job_id}")  # a clear 404 before streaming
        with client.http.stream("GET", f"/v1/jobs/{job_id}/logs", params={"follow": follow_logs}) as response:
            for text in response.iter_text():
                typer.echo(text, nl=False)


@jobs_app.command("cancel")
def cancel(job_id: str, bridge: BridgeOption = DEFAULT_BRIDGE, token: TokenOption = None) -> None:
    """Stop a job's workers."""
    from sqlml.commands.embedded import cli_errors

    with cli_errors():
        show_job(JobsClient(bridge, token).call("POST", f"/v1/jobs/{job_id}/cancel"))
