"""Cold starts that do not fail: the start-up preload and `/readyz`, one load shared by the first
calls, and the "still loading" answer when a load outlasts `load_timeout_s`.

Loads are held by gates (`slow_load_fakes.GATES`) that the tests open, so nothing depends on how
fast this machine is, except the real bridge process at the end, whose fake load sleeps.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from sqlml.bridge.host import ModelHost
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings
from sqlml.bridge.state import BridgeState
from sqlml.errors import ModelLoadError
from tests.bridge import slow_load_fakes as slow
from tests.bridge import sqlml_test_fakes as fakes
from tests.bridge.conftest import ADMIN, BridgeProcess

BODY = {"rows": [{"a": 1.0, "b": 2.0}]}


@pytest.fixture
def cold(registry: Registry) -> Iterator[str]:
    """A model whose load waits until the test opens its gate (opened at teardown in any case)."""
    fakes.publish(registry, "cold", "fake_slow_load", alias="production")
    fakes.publish(registry, "broken", "fake_corrupt")
    slow.LOADS.clear()
    slow.GATES.close("cold")
    yield "cold"
    slow.GATES.open_all()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def cache_misses(app: FastAPI, model: str) -> float:
    state: BridgeState = app.state.bridge
    for family in text_string_to_metric_families(state.metrics.render().decode()):
        for sample in family.samples:
            if sample.name == "sqlml_model_cache_misses_total" and sample.labels.get("model") == model:
                return sample.value
    return 0.0


def test_readyz_is_503_while_preloading_then_200(make_app: Callable[..., FastAPI], cold: str) -> None:
    app = make_app(preload=[cold, "broken", "nosuchmodel"])
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200  # alive while the preload runs
        loading = client.get("/readyz")
        assert loading.status_code == 503
        error = loading.json()["error"]
        assert error["code"] == "unavailable"
        assert error["message"].startswith("models still loading: cold")
        assert error["detail"]["loading"][0] == "cold"

        slow.GATES.open(cold)
        wait_for(lambda: client.get("/readyz").status_code == 200)
        ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["models"] == ["cold:1"]
    failed = {f["model"]: f["error"] for f in ready["preload_failed"]}
    assert set(failed) == {"broken", "nosuchmodel"}  # a failed preload is reported, not waited for
    assert "failed to load" in failed["broken"]
    assert slow.LOADS["cold"] == 1


def test_preload_star_loads_every_model(make_app: Callable[..., FastAPI], cold: str) -> None:
    slow.GATES.open(cold)
    with TestClient(make_app(preload=["*"]), raise_server_exceptions=False) as client:
        wait_for(lambda: client.get("/readyz").status_code == 200)
        ready = client.get("/readyz").json()
    assert {"cold:1", "sum:1", "echo:1"} <= set(ready["models"])
    assert "broken" in {f["model"] for f in ready["preload_failed"]}


def test_concurrent_first_calls_share_one_load(make_app: Callable[..., FastAPI], cold: str) -> None:
    app = make_app(load_timeout_s=30)
    callers = 6

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge", headers=ADMIN) as client:
            requests = [asyncio.create_task(client.post("/v1/models/cold/predict", json=BODY)) for _ in range(callers)]
            async with asyncio.timeout(10):
                while cache_misses(app, cold) < callers:  # every caller is waiting on the load
                    await asyncio.sleep(0.02)
            slow.GATES.open(cold)
            return list(await asyncio.gather(*requests))

    answers = asyncio.run(calls())
    assert [a.status_code for a in answers] == [200] * callers
    assert all(a.json()["rows"] == [{"total": 3.0}] for a in answers)
    assert slow.LOADS["cold"] == 1


def test_a_load_longer_than_load_timeout_says_still_loading(make_app: Callable[..., FastAPI], cold: str) -> None:
    with TestClient(make_app(load_timeout_s=0.3), headers=ADMIN, raise_server_exceptions=False) as client:
        started = time.monotonic()
        answer = client.post("/v1/models/cold/predict", json=BODY)
        assert time.monotonic() - started < 5
        assert answer.status_code == 503
        error = answer.json()["error"]
        assert error["code"] == "unavailable"
        assert error["message"] == 'model "cold" is still loading (0 s so far)'
        assert "--preload cold" in error["hint"]

        slow.GATES.open(cold)  # the load went on in the background: the next call is served by it
        wait_for(lambda: client.post("/v1/models/cold/predict", json=BODY).status_code == 200)
    assert slow.LOADS["cold"] == 1


def test_the_request_timeout_does_not_turn_a_load_into_a_504(make_app: Callable[..., FastAPI], cold: str) -> None:
    """The request timeout starts once the model is loaded: a load longer than it waits its own
    load_timeout_s and is answered 'still loading', never 504."""
    settings: dict[str, Any] = {"request_timeout_s": 1, "load_timeout_s": 3}
    with TestClient(make_app(**settings), headers=ADMIN, raise_server_exceptions=False) as client:
        started = time.monotonic()
        answer = client.post("/v1/models/cold/predict", json=BODY)
        waited = time.monotonic() - started
        slow.GATES.open(cold)
    assert answer.status_code == 503, answer.text
    assert "is still loading" in answer.json()["error"]["message"]
    assert waited >= 2.5  # past the 1 s request timeout: the load wait is not cut short by it


def test_every_waiter_gets_a_failed_load_and_the_next_call_retries(registry: Registry) -> None:
    fakes.publish(registry, "broken", "fake_corrupt")
    host = ModelHost(registry)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def call() -> None:
        barrier.wait()
        try:
            host.get("broken")
        except ModelLoadError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(errors) == 4
    with pytest.raises(ModelLoadError, match='model "broken" version 1 failed to load'):
        host.get("broken")  # not a cached failure: a later call loads again


def test_preload_and_load_timeout_from_the_environment() -> None:
    settings = BridgeSettings.load(env={"SQLML_PRELOAD": "sentiment, lead_scoring", "SQLML_LOAD_TIMEOUT_S": "7.5"})
    assert settings.preload == ["sentiment", "lead_scoring"]
    assert settings.load_timeout_s == 7.5
    assert BridgeSettings.load(env={}).load_timeout_s == 120.0


@pytest.mark.bridge
def test_a_real_bridge_started_with_preload(registry: Registry, tmp_path: Any) -> None:
    fakes.publish(registry, "cold", "fake_slow_load", params={"load_s": 3.0}, alias="production")
    plugins = "tests.bridge.sqlml_test_fakes,tests.bridge.slow_load_fakes"
    bridge = BridgeProcess(registry.url, tmp_path, "--preload", "cold", env={"SQLML_PLUGINS": plugins})
    starting = threading.Thread(target=bridge.start)  # start() returns once /readyz says 200
    starting.start()
    try:
        wait_for(lambda: _answers(f"{bridge.url}/healthz"), timeout=60)
        loading = httpx.get(f"{bridge.url}/readyz", timeout=5)
        assert loading.status_code == 503
        assert loading.json()["error"]["detail"]["loading"] == ["cold"]
        starting.join(60)
        ready = httpx.get(f"{bridge.url}/readyz", timeout=5).json()
        assert ready["models"] == ["cold:1"]
        started = time.monotonic()
        answer = httpx.post(f"{bridge.url}/v1/models/cold/predict", json=BODY, headers=ADMIN, timeout=5)
        assert answer.status_code == 200
        assert time.monotonic() - started < 2  # warm: the preload paid for the load
        assert "preloaded cold (version 1)" in bridge.log.read_text()
    finally:
        starting.join(60)
        bridge.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_pinned_models_are_pinned_and_preloaded_at_start(make_app: Callable[..., FastAPI], cold: str) -> None:
    with TestClient(make_app(pin=[cold]), headers=ADMIN, raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 503  # the pinned model is loading
        slow.GATES.open(cold)
        wait_for(lambda: client.get("/readyz").status_code == 200)
        assert client.get(f"/v1/models/{cold}").json()["pinned"] is True
    assert slow.LOADS[cold] == 1
