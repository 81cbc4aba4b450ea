"""Fixtures of the bridge tests: a tmp registry of fake and tiny XGBoost models, in-process apps
and clients, and a real `sqlml serve` subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sqlml.bridge.app import create_app
from sqlml.bridge.manifest import Batching
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings
from tests.bridge import sqlml_test_fakes as fakes

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
SQLML = ROOT / ".venv" / "bin" / "sqlml"

TOKENS = {
    "admin-token": ["admin"],
    "sum-token": ["predict:sum"],
    "all-token": ["predict:*"],
    "train-token": ["train"],
}
ADMIN = {"Authorization": "Bearer admin-token"}


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "store")
    fakes.publish(registry, "sum", alias="production")  # v1
    fakes.publish(registry, "sum", params={"offset": 100.0})  # v2, reachable as sum:2 or sum:latest
    fakes.publish(registry, "echo", "fake_echo")
    fakes.publish(registry, "failing", "fake_error")
    fakes.publish(registry, "slow", params={"sleep_s": 0.05}, batching=Batching(max_batch_size=64, max_wait_ms=20))
    fakes.publish(registry, "guarded")  # v1 loads
    fakes.publish(registry, "guarded", "fake_corrupt", alias="production")  # v2 is corrupt
    fakes.publish(registry, "forecaster", task="forecast")
    return registry


@pytest.fixture
def make_app(registry: Registry) -> Callable[..., FastAPI]:
    def build(**overrides: Any) -> FastAPI:
        values: dict[str, Any] = {"store": registry.url, "tokens": TOKENS}
        values.update(overrides)
        return create_app(BridgeSettings.model_validate(values))

    return build


@pytest.fixture
def app(make_app: Callable[..., FastAPI]) -> FastAPI:
    return make_app()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, headers=ADMIN, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def anon(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class BridgeProcess:
    """A real `sqlml serve` on 127.0.0.1 and a random port."""

    def __init__(self, store: str, tmp: Path, *args: str, env: dict[str, str] | None = None):
        self.store = store
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"bridge-{self.port}.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "SQLML_PLUGINS": "tests.bridge.sqlml_test_fakes",
            "SQLML_TOKENS": json.dumps(TOKENS),
            "SQLML_HOME": str(tmp / "home"),
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> BridgeProcess:
        command = [str(SQLML), "serve", "--port", str(self.port), "--store", self.store, *self.args]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bridge exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"bridge did not become ready:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        text = httpx.get(f"{self.url}/metrics", timeout=5.0).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total


@pytest.fixture
def bridge_factory(tmp_path: Path) -> Iterator[Callable[..., BridgeProcess]]:
    started: list[BridgeProcess] = []

    def start(store: str, *args: str, env: dict[str, str] | None = None) -> BridgeProcess:
        bridge = BridgeProcess(store, tmp_path, *args, env=env).start()
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        bridge.stop()


__all__ = ["ADMIN", "TOKENS", "BridgeProcess"]
