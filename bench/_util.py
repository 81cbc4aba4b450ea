"""Helpers shared by the bridge benchmarks: a real `sqlml serve` subprocess, tiny real models,
percentiles and peak memory of a process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from sqlml.bridge.manifest import Batching, Column, Manifest, Signature
from sqlml.bridge.registry import Registry

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Bridge:
    """`sqlml serve --no-auth` on a free port, stopped on exit."""

    def __init__(self, store: str, *args: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "sqlml.commands.serve",  # `sqlml serve` without needing the console script
            "--no-auth",
            "--port",
            str(self.port),
            "--store",
            store,
            "--log-level",
            "warning",
            *args,
        ]
        self.log = tempfile.NamedTemporaryFile(prefix="sqlml-bench-bridge-", suffix=".log", delete=False)  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(Path(self.log.name).read_text()[-2000:])
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("bridge did not start")

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def rss_bytes(self, field: str = "VmRSS") -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def metrics(self) -> dict[str, float]:
        """Sample name{labels} -> value, summed over labels for the bare sample name too."""
        from prometheus_client.parser import text_string_to_metric_families

        out: dict[str, float] = {}
        for family in text_string_to_metric_families(httpx.get(f"{self.url}/metrics").text):
            for sample in family.samples:
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
        return out


def train_booster(features: int, trees: int, seed: int, depth: int = 4) -> Any:
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, features)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(scale=0.5, size=2000) > 0).astype(np.float32)
    return xgb.train(
        {"objective": "binary:logistic", "max_depth": depth, "nthread": 1, "seed": seed},
        xgb.DMatrix(x, label=y),
        num_boost_round=trees,
    )


def publish_booster(
    registry: Registry, name: str, booster: Any, features: int, batching: Batching | None = None
) -> None:
    manifest = Manifest(
        name=name,
        runtime="xgboost",
        task="classification",
        signature=Signature(
            inputs=[Column(name=f"f{i}", type="double") for i in range(features)],
            outputs=[Column(name="probability", type="double")],
        ),
        batching=batching or Batching(),
    )
    with tempfile.TemporaryDirectory() as tmp:
        booster.save_model(str(Path(tmp) / "model.json"))
        registry.publish(manifest, tmp)


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q))
