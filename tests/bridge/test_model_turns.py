"""Explain and forecast take turns per model version: queued on the event loop, one runtime call
at a time, a capped queue (503 beyond it), and an abandoned call keeps its turn until it returns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from sqlml.bridge.registry import Registry
from tests.bridge import sqlml_test_fakes as fakes


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    fakes.CALLS.clear()
    fakes.MOST_AT_ONCE.clear()


async def _explain_all(app: FastAPI, model: str, values: list[float]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
        responses = await asyncio.gather(
            *(http.post(f"/v1/models/{model}/explain", json={"rows": [{"a": v, "b": 1.0}], "top_k": 1}) for v in values)
        )
    return list(responses)


def test_concurrent_explains_run_one_at_a_time_and_all_answer(
    registry: Registry, make_app: Callable[..., FastAPI]
) -> None:
    fakes.publish(registry, "explained", params={"explain_sleep_s": 0.05})
    values = [float(v) for v in range(2, 8)]
    responses = asyncio.run(_explain_all(make_app(auth=False), "explained", values))
    assert [r.status_code for r in responses] == [200] * len(values)
    assert [r.json()["rows"][0]["contributions"][0]["value"] for r in responses] == values
    assert fakes.MOST_AT_ONCE["explained"] == 1
    assert len(fakes.CALLS) == len(values)  # not coalesced: explain calls are not batched


def test_a_full_explain_queue_answers_503(registry: Registry, make_app: Callable[..., FastAPI]) -> None:
    fakes.publish(registry, "crowded", params={"explain_sleep_s": 0.3})
    responses = asyncio.run(_explain_all(make_app(auth=False, max_pending_per_model=2), "crowded", [1.0] * 8))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 3, statuses  # one running, two queued
    refused = [r.json()["error"] for r in responses if r.status_code == 503]
    assert len(refused) == 5
    assert all(e["code"] == "unavailable" and "overloaded (2 requests queued)" in e["message"] for e in refused)


def test_a_timed_out_explain_keeps_the_models_turn_until_its_call_returns(
    registry: Registry, make_app: Callable[..., FastAPI]
) -> None:
    fakes.publish(registry, "stubborn", params={"explain_sleep_s": 0.6})
    app = make_app(auth=False, request_timeout_s=0.2)
    state = app.state.bridge

    async def scenario() -> tuple[int, int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
            body = {"rows": [{"a": 1.0, "b": 1.0}]}
            timed_out = await http.post("/v1/models/stubborn/explain", json=body)
            loaded = state.host.get_if_loaded("stubborn")
            assert loaded is not None
            still_running = state.turns.callers(loaded)  # about 0.2 s in: the call runs on
            await asyncio.sleep(0.6)
            after = state.turns.callers(loaded)
        return timed_out.status_code, still_running, after

    status, still_running, after = asyncio.run(scenario())
    assert status == 504
    assert still_running == 1
    assert after == 0
