"""The dynamic batcher: concurrent requests share runtime calls, results go back in order, and a
failing batch is retried per request so one request's failure stays its own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from sqlml.bridge.manifest import Batching
from sqlml.bridge.registry import Registry
from tests.bridge import sqlml_test_fakes as fakes


async def _concurrent(app: FastAPI, model: str, values: list[float]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
        responses = await asyncio.gather(
            *(http.post(f"/v1/models/{model}/predict", json={"rows": [{"a": v, "b": 1.0}]}) for v in values)
        )
    await app.state.bridge.batcher.close()
    return list(responses)


def _calls(model: str) -> list[int]:
    return [rows for name, rows in fakes.CALLS if name == model]


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    fakes.CALLS.clear()
    fakes.MOST_AT_ONCE.clear()


def test_concurrent_single_rows_are_coalesced_in_order(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(auth=False)
    values = [float(i) for i in range(24)]
    responses = asyncio.run(_concurrent(app, "slow", values))
    assert [r.json()["rows"][0]["total"] for r in responses] == [v + 1 for v in values]
    calls = _calls("slow")
    assert sum(calls) == 24
    assert max(calls) > 1, calls
    assert len(calls) < 24
    metrics = app.state.bridge.metrics.render().decode()
    assert 'sqlml_batch_size_requests_bucket{le="1.0",model="slow"}' in metrics


def test_max_batch_size_caps_a_batch(registry: Registry, make_app: Callable[..., FastAPI]) -> None:
    fakes.publish(registry, "capped", params={"sleep_s": 0.02}, batching=Batching(max_batch_size=4, max_wait_ms=50))
    responses = asyncio.run(_concurrent(make_app(auth=False), "capped", [1.0] * 12))
    assert all(r.status_code == 200 for r in responses)
    assert max(_calls("capped")) <= 4


def test_batching_off_calls_once_per_request_one_call_at_a_time(make_app: Callable[..., FastAPI]) -> None:
    """Off, requests are not coalesced, but the per-version concurrency limit still holds: the
    fake runtime sleeps in every call, so overlapping calls would show in MOST_AT_ONCE."""
    values = [float(i) for i in range(6)]
    responses = asyncio.run(_concurrent(make_app(auth=False, batching=False), "slow", values))
    assert [r.json()["rows"][0]["total"] for r in responses] == [v + 1 for v in values]
    assert _calls("slow") == [1] * 6
    assert fakes.MOST_AT_ONCE["slow"] == 1


def test_batched_calls_to_one_version_never_overlap(make_app: Callable[..., FastAPI]) -> None:
    responses = asyncio.run(_concurrent(make_app(auth=False, max_batch_size=4), "slow", [1.0] * 24))
    assert all(r.status_code == 200 for r in responses)
    assert len(_calls("slow")) >= 6
    assert fakes.MOST_AT_ONCE["slow"] == 1


def test_one_failing_request_does_not_fail_its_batch(registry: Registry, make_app: Callable[..., FastAPI]) -> None:
    fakes.publish(
        registry,
        "picky",
        params={"fail_on_negative": True, "sleep_s": 0.02},
        batching=Batching(max_batch_size=64, max_wait_ms=30),
    )
    values = [1.0, 2.0, -1.0, 3.0, 4.0, 5.0]
    responses = asyncio.run(_concurrent(make_app(auth=False), "picky", values))
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 500, 200, 200, 200]
    assert responses[2].json()["error"]["message"].startswith('model "picky" version 1 failed in predict')
    assert responses[3].json()["rows"] == [{"total": 4.0}]


def test_settings_override_manifest_batching(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(auth=False, max_batch_size=2, max_wait_ms=30.0)
    responses = asyncio.run(_concurrent(app, "slow", [1.0] * 8))
    assert all(r.status_code == 200 for r in responses)
    assert max(_calls("slow")) == 2


def test_max_wait_counts_from_arrival_so_a_request_queued_behind_a_batch_runs_next(
    registry: Registry, make_app: Callable[..., FastAPI]
) -> None:
    """A (t=0) waits 0.4 s for company, then runs 0.4-1.0 s. B arrives at 0.5 s, during A's run, so
    by 1.0 s it has waited longer than max_wait_ms and runs at once, alone. C, arriving at 1.2 s,
    gets a batch of its own: had B's wait started only when the worker took it (until 1.4 s), C
    would have joined B."""
    fakes.publish(registry, "queued", params={"sleep_s": 0.6}, batching=Batching(max_batch_size=64, max_wait_ms=400))
    app = make_app(auth=False)

    async def staggered() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:

            async def post_after(delay: float, value: float) -> httpx.Response:
                await asyncio.sleep(delay)
                return await http.post("/v1/models/queued/predict", json={"rows": [{"a": value, "b": 1.0}]})

            responses = await asyncio.gather(post_after(0.0, 1.0), post_after(0.5, 2.0), post_after(1.2, 3.0))
        await app.state.bridge.batcher.close()
        return list(responses)

    responses = asyncio.run(staggered())
    assert [r.json()["rows"][0]["total"] for r in responses] == [2.0, 3.0, 4.0]
    assert _calls("queued") == [1, 1, 1]


@pytest.mark.parametrize("batching", [True, False], ids=["batching-on", "batching-off"])
def test_a_full_queue_answers_503_and_the_queued_requests_still_succeed(
    registry: Registry, make_app: Callable[..., FastAPI], batching: bool
) -> None:
    """One runtime call at a time per version (batches of 1 here), at most 2 requests waiting,
    whether batching is on or off: off, requests queue the same way rather than pile up in threads."""
    fakes.publish(registry, "narrow", params={"sleep_s": 0.5}, batching=Batching(max_batch_size=1, max_wait_ms=0))
    app = make_app(auth=False, max_pending_per_model=2, batching=batching)
    responses = asyncio.run(_concurrent(app, "narrow", [1.0] * 8))
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 503}, statuses
    refused = [r.json()["error"] for r in responses if r.status_code == 503]
    assert all(e["code"] == "unavailable" and "overloaded" in e["message"] for e in refused)
    assert 1 <= statuses.count(200) <= 3  # the one running and at most 2 queued
    assert max(_calls("narrow")) == 1
