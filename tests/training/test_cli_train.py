"""`sqlml train` and `sqlml jobs` against a real bridge (uvicorn in a thread) with the job routes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from sqlml.bridge.app import create_app
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings
from sqlml.cli import app as cli


@pytest.fixture
def bridge_url(registry: Registry, tmp_path: Path) -> Iterator[str]:
    app = create_app(
        BridgeSettings.model_validate(
            {
                "store": registry.url,
                "tokens": {"t": ["train"]},
                "jobs_db": str(tmp_path / "jobs.sqlite"),
                "train_roots": [str(tmp_path)],
            }
        )
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the bridge did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_train_waits_with_progress_then_jobs_commands_show_it(
    bridge_url: str, registry: Registry, duckdb_leads: Path
) -> None:
    runner = CliRunner(env={"COLUMNS": "200"})  # rich fits tables to the terminal width
    common = ["--bridge", bridge_url, "--token", "t"]
    result = runner.invoke(
        cli,
        ["train", "--model", "leads_cli", "--task", "classification", "--source", str(duckdb_leads),
         "--query", "SELECT income, cars, owner, purchased FROM leads", "--target", "purchased",
         "--param", "n_estimators=10", "--param", "max_depth=2", *common],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output and "metrics.auc" in result.output
    assert registry.resolve("leads_cli") == 1

    listing = runner.invoke(cli, ["jobs", "list", *common])
    assert listing.exit_code == 0 and "leads_cli" in listing.output
    job_id = registry.describe("leads_cli").lineage["job_id"]
    shown = runner.invoke(cli, ["jobs", "show", job_id, *common])
    assert "version" in shown.output and "promoted" in shown.output
    logs = runner.invoke(cli, ["jobs", "logs", job_id, *common])
    assert f"job {job_id} succeeded" in logs.output


def test_train_reports_a_refused_spec_in_one_line(bridge_url: str, duckdb_leads: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["train", "--model", "m", "--task", "clustering", "--source", str(duckdb_leads), "--query", "SELECT 1 AS y",
         "--target", "y", "--bridge", bridge_url, "--token", "t"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "error [bad_request]: unknown task 'clustering'" in result.output


def test_train_reports_a_file_outside_the_bridges_roots(
    bridge_url: str, duckdb_leads: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "leads.duckdb"
    elsewhere.write_bytes(duckdb_leads.read_bytes())
    result = CliRunner().invoke(
        cli,
        ["train", "--model", "m", "--task", "classification", "--source", str(elsewhere),
         "--query", "SELECT income, purchased FROM leads", "--target", "purchased",
         "--bridge", bridge_url, "--token", "t"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "error [forbidden]: DuckDB file" in result.output and "train_roots" in result.output
