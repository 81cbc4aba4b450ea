"""Fair, bounded model work: a large request runs in batch-sized pieces that take turns with other
callers, its queued pieces are dropped when it times out or its client goes away, and a request
over `max_request_rows` is answered 413 before the runtime is called.

The fake model `steady` takes about 5 ms per 64-row batch (1 ms per call plus 60 µs per row), so
its pieces grow to about `PIECE_SECONDS` of rows; `sluggish` takes 32 ms per 64 rows, more than a
piece's time, so its pieces stay one batch of 64 rows; `fast` is as fast as the fake can be.
Wall-clock bounds are generous (a share of the big request's own time); the measured numbers are
printed (`pytest -s`) and carried in the assertion messages.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import httpx
import pyarrow as pa
import pytest
from fastapi import FastAPI

from sqlml.bridge.batcher import PIECE_SECONDS
from sqlml.bridge.manifest import Batching
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings
from sqlml.bridge.wire import ARROW_STREAM, read_ipc, write_ipc
from tests.bridge import sqlml_test_fakes as fakes
from tests.bridge.conftest import BridgeProcess

BIG_ROWS = 20_000
STEADY = {"sleep_s": 0.001, "sleep_per_row_s": 0.00006}  # ~5 ms per 64-row batch
STEADY_BATCHING = Batching(max_batch_size=64, max_wait_ms=2)
SLUGGISH = {"sleep_per_row_s": 0.0005}


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    fakes.CALLS.clear()
    fakes.FIRST_INPUTS.clear()
    fakes.MOST_AT_ONCE.clear()


@pytest.fixture
def steady(registry: Registry) -> str:
    fakes.publish(registry, "steady", params=STEADY, batching=STEADY_BATCHING)
    return "steady"


@pytest.fixture
def sluggish(registry: Registry) -> str:
    fakes.publish(registry, "sluggish", params=SLUGGISH, batching=STEADY_BATCHING)
    return "sluggish"


def _calls(model: str) -> list[int]:
    return [rows for name, rows in fakes.CALLS if name == model]


def _rows(n: int, start: int = 0) -> pa.Table:
    """Inputs whose `total` output is each row's own index: order shows in the answer."""
    return pa.table({"a": [float(i) for i in range(start, start + n)], "b": [0.0] * n})


def _arrow(table: pa.Table) -> dict[str, Any]:
    return {"content": write_ipc(table), "headers": {"Content-Type": ARROW_STREAM}}


def _totals(response: httpx.Response) -> list[float]:
    values: list[float] = read_ipc(response.content).column("total").to_pylist()
    return values


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.002)


# -- in process --------------------------------------------------------------------------------


def test_a_one_row_request_is_answered_while_a_big_one_runs(
    make_app: Callable[..., FastAPI], steady: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(auth=False)

    async def scenario() -> tuple[httpx.Response, httpx.Response, float, float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge", timeout=60) as http:
            started = time.perf_counter()
            big = asyncio.ensure_future(http.post(f"/v1/models/{steady}/predict", **_arrow(_rows(BIG_ROWS))))
            await _until(lambda: len(_calls(steady)) >= 10)  # well into the big request
            small_started = time.perf_counter()
            small = await http.post(f"/v1/models/{steady}/predict", json={"rows": [{"a": -5.0, "b": 1.0}]})
            small_s = time.perf_counter() - small_started
            big_response = await big
            big_s = time.perf_counter() - started
        await app.state.bridge.batcher.close()
        return big_response, small, small_s, big_s

    big, small, small_s, big_s = asyncio.run(scenario())
    with capsys.disabled():
        print(
            f"\n[in process] one-row request {small_s * 1000:.1f} ms while a {BIG_ROWS}-row request took {big_s:.2f} s"
        )
    assert small.status_code == 200 and small.json()["rows"] == [{"total": -4.0}]
    assert big.status_code == 200
    assert _totals(big) == [float(i) for i in range(BIG_ROWS)]  # complete and in order
    assert big_s > 1.0  # the fake really is slow: ~313 batches of ~5 ms
    assert small_s < 0.2 * big_s, (small_s, big_s)
    calls = _calls(steady)
    assert max(calls) * STEADY["sleep_per_row_s"] < 2 * PIECE_SECONDS, calls  # pieces of about a slice
    assert sum(calls) == BIG_ROWS + 1
    assert fakes.MOST_AT_ONCE[steady] == 1  # pieces never run beside each other


def test_a_lone_big_request_to_a_slow_model_runs_in_ceil_n_over_batch_size_pieces(
    make_app: Callable[..., FastAPI], sluggish: str
) -> None:
    app = make_app(auth=False)

    async def one() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
            response = await http.post(f"/v1/models/{sluggish}/predict", json={"columns": _rows(200).to_pydict()})
        await app.state.bridge.batcher.close()
        return response

    response = asyncio.run(one())
    assert response.json()["columns"]["total"] == [float(i) for i in range(200)]
    assert _calls(sluggish) == [64, 64, 64, 8]


def test_a_fast_model_gets_pieces_of_about_piece_seconds(registry: Registry, make_app: Callable[..., FastAPI]) -> None:
    """Per-call overhead would dominate a fast model cut into 64-row pieces: after the first
    piece, pieces hold as many rows as the model scores in about PIECE_SECONDS."""
    fakes.publish(registry, "fast", batching=STEADY_BATCHING)
    app = make_app(auth=False)

    async def one() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
            response = await http.post("/v1/models/fast/predict", **_arrow(_rows(BIG_ROWS)))
        await app.state.bridge.batcher.close()
        return response

    assert _totals(asyncio.run(one())) == [float(i) for i in range(BIG_ROWS)]
    calls = _calls("fast")
    assert calls[0] == 64 and sum(calls) == BIG_ROWS
    assert len(calls) < BIG_ROWS / 64 / 4, calls  # 313 pieces of 64 rows would be the slow-model cut


def test_two_big_requests_take_turns(make_app: Callable[..., FastAPI], sluggish: str) -> None:
    app = make_app(auth=False)

    async def both() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
            first = asyncio.ensure_future(http.post(f"/v1/models/{sluggish}/predict", **_arrow(_rows(640))))
            await _until(lambda: len(_calls(sluggish)) >= 1)
            second = await http.post(f"/v1/models/{sluggish}/predict", **_arrow(_rows(640, start=10_000)))
            responses = [await first, second]
        await app.state.bridge.batcher.close()
        return responses

    first, second = asyncio.run(both())
    assert _totals(first) == [float(i) for i in range(640)]
    assert _totals(second) == [float(i) for i in range(10_000, 10_640)]
    # whose piece each call ran (every piece is a full batch here): once the second request
    # arrived, the two alternate rather than the second waiting for the whole first
    firsts = [value for name, value in fakes.FIRST_INPUTS if name == sluggish and value is not None]
    order = "".join("F" if value < 10_000 else "S" for value in firsts)
    assert sorted(order) == ["F"] * 10 + ["S"] * 10, order
    both_queued = order[order.index("S") : order.rindex("F") + 1]  # after that only the second is left
    assert len(both_queued) > 10 and "SS" not in both_queued and "FF" not in both_queued, order


def test_batching_off_still_cuts_big_requests_one_piece_per_call(
    make_app: Callable[..., FastAPI], sluggish: str
) -> None:
    app = make_app(auth=False, batching=False)

    async def one() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
            response = await http.post(f"/v1/models/{sluggish}/predict", **_arrow(_rows(130)))
        await app.state.bridge.batcher.close()
        return response

    assert _totals(asyncio.run(one())) == [float(i) for i in range(130)]
    assert _calls(sluggish) == [64, 64, 2]


def test_a_failing_piece_fails_its_request_and_drops_the_rest(
    registry: Registry, make_app: Callable[..., FastAPI]
) -> None:
    params = {"fail_on_negative": True, "sleep_per_row_s": 0.005}  # 50 ms a piece: pieces of 10 rows
    fakes.publish(registry, "fragile", params=params, batching=Batching(max_batch_size=10))
    app = make_app(auth=False)
    inputs = _rows(100).set_column(0, "a", pa.array([-1.0 if i == 15 else float(i) for i in range(100)]))

    async def one() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
            response = await http.post("/v1/models/fragile/predict", **_arrow(inputs))
        await app.state.bridge.batcher.close()
        return response

    response = asyncio.run(one())
    assert response.status_code == 500
    assert 'model "fragile" version 1 failed in predict' in response.json()["error"]["message"]
    assert _calls("fragile") == [10, 10]  # the piece holding row 15 failed; the other eight never ran


def test_a_timed_out_request_drops_its_queued_pieces(make_app: Callable[..., FastAPI], steady: str) -> None:
    app = make_app(auth=False, request_timeout_s=0.3)

    async def abandon() -> tuple[httpx.Response, int, int, httpx.Response, float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
            big = await http.post(f"/v1/models/{steady}/predict", **_arrow(_rows(BIG_ROWS)))
            at_timeout = len(_calls(steady))
            await asyncio.sleep(0.3)  # ~60 batch times: the rest of the big request would run now
            later = len(_calls(steady))
            started = time.perf_counter()
            small = await http.post(f"/v1/models/{steady}/predict", json={"rows": [{"a": 1.0, "b": 1.0}]})
            small_s = time.perf_counter() - started
        await app.state.bridge.batcher.close()
        return big, at_timeout, later, small, small_s

    big, at_timeout, later, small, small_s = asyncio.run(abandon())
    assert big.status_code == 504 and big.json()["error"]["code"] == "timeout"
    assert at_timeout < BIG_ROWS / 64 / 2  # it really was cut short
    assert later - at_timeout <= 1, (at_timeout, later)  # at most the piece that was running
    assert small.json()["rows"] == [{"total": 2.0}]
    assert small_s < 0.25, small_s  # the model is free: no leftover pieces ahead of it


def test_a_client_that_disconnects_drops_its_queued_pieces(app: FastAPI, steady: str) -> None:
    """Driven at the ASGI level: the client's `receive` reports `http.disconnect` after 0.2 s."""
    body = write_ipc(_rows(BIG_ROWS))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/v1/models/{steady}/predict",
        "raw_path": f"/v1/models/{steady}/predict".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bridge"),
            (b"authorization", b"Bearer admin-token"),
            (b"content-type", ARROW_STREAM.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("bridge", 80),
    }
    sent: list[dict[str, Any]] = []

    async def disconnect_midway() -> tuple[int, int, float]:
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(0.2)
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        started = time.perf_counter()
        await app(scope, receive, send)
        answered_s = time.perf_counter() - started
        at_disconnect = len(_calls(steady))
        await asyncio.sleep(0.3)
        later = len(_calls(steady))
        await app.state.bridge.batcher.close()
        return at_disconnect, later, answered_s

    at_disconnect, later, answered_s = asyncio.run(disconnect_midway())
    assert answered_s < 1.0, answered_s  # the lane stopped waiting when the client left
    assert 0 < at_disconnect < BIG_ROWS / 64 / 2
    assert later - at_disconnect <= 1, (at_disconnect, later)
    assert sent[0]["status"] == 499


def test_over_the_row_limit_is_413_before_the_runtime_is_called(make_app: Callable[..., FastAPI], steady: str) -> None:
    app = make_app(auth=False, max_request_rows=100)

    async def send() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
            over = await http.post(f"/v1/models/{steady}/predict", **_arrow(_rows(101)))
            over_json = await http.post(f"/v1/models/{steady}/predict", json={"columns": _rows(101).to_pydict()})
            over_explain = await http.post(f"/v1/models/{steady}/explain", json={"columns": _rows(101).to_pydict()})
            calls_before_ok = len(fakes.CALLS)
            at_limit = await http.post(f"/v1/models/{steady}/predict", **_arrow(_rows(100)))
        await app.state.bridge.batcher.close()
        assert calls_before_ok == 0
        return [over, over_json, over_explain, at_limit]

    *refused, at_limit = asyncio.run(send())
    for response in refused:
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["code"] == "payload_too_large"
        assert "101 rows exceeds the limit of 100 rows" in error["message"]
        assert "max_request_rows" in error["hint"] and "SQLML_MAX_REQUEST_ROWS" in error["hint"]
    assert at_limit.status_code == 200
    assert _calls(steady) == [64, 36]


def test_big_explain_runs_in_pieces_in_order(make_app: Callable[..., FastAPI], steady: str) -> None:
    app = make_app(auth=False)

    async def explain() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
            return await http.post(f"/v1/models/{steady}/explain", json={"columns": _rows(150).to_pydict(), "top_k": 1})

    response = asyncio.run(explain())
    assert response.json()["columns"]["margin"] == [float(i) for i in range(150)]
    assert _calls(steady) == [64, 64, 22]


def test_max_request_rows_setting_from_the_environment() -> None:
    assert BridgeSettings.load(env={"SQLML_MAX_REQUEST_ROWS": "5000"}).max_request_rows == 5000
    assert BridgeSettings.load(env={}).max_request_rows == 100_000


# -- a real bridge process ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    registry = Registry(tmp_path_factory.mktemp("fairness") / "store")
    fakes.publish(registry, "steady", params=STEADY, batching=STEADY_BATCHING)
    env = {"SQLML_MAX_REQUEST_ROWS": "50000"}
    process = BridgeProcess(registry.url, tmp_path_factory.mktemp("logs"), "--no-auth", env=env).start()
    yield process
    process.stop()


def _batches(bridge: BridgeProcess) -> float:
    return bridge.metric("sqlml_batch_size_rows_count", model="steady")


def _wait_for_batches(bridge: BridgeProcess, at_least: float) -> None:
    deadline = time.monotonic() + 10
    while _batches(bridge) < at_least:
        assert time.monotonic() < deadline, "the big request did not start"
        time.sleep(0.01)


@pytest.mark.bridge
def test_real_bridge_answers_one_row_while_a_big_request_runs(
    real_bridge: BridgeProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{real_bridge.url}/v1/models/steady/predict"
    outcome: dict[str, Any] = {}

    def big_request() -> None:
        started = time.perf_counter()
        outcome["response"] = httpx.post(url, timeout=60, **_arrow(_rows(BIG_ROWS)))
        outcome["seconds"] = time.perf_counter() - started

    before = _batches(real_bridge)
    worker = threading.Thread(target=big_request)
    worker.start()
    _wait_for_batches(real_bridge, before + 10)
    latencies = []
    with httpx.Client(timeout=10) as http:
        for value in range(5):
            started = time.perf_counter()
            small = http.post(url, json={"rows": [{"a": float(value), "b": 1.0}]})
            latencies.append(time.perf_counter() - started)
            assert small.json()["rows"] == [{"total": value + 1.0}]
    worker.join(60)
    big_s = float(outcome["seconds"])
    with capsys.disabled():
        shown = ", ".join(f"{s * 1000:.1f}" for s in latencies)
        print(f"\n[real bridge] one-row requests {shown} ms while a {BIG_ROWS}-row request took {big_s:.2f} s")
    assert _totals(outcome["response"]) == [float(i) for i in range(BIG_ROWS)]
    assert max(latencies) < 0.2 * big_s, (latencies, big_s)


@pytest.mark.bridge
def test_real_bridge_drops_the_pieces_of_a_client_that_hung_up(real_bridge: BridgeProcess) -> None:
    url = f"{real_bridge.url}/v1/models/steady/predict"
    before = _batches(real_bridge)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, timeout=httpx.Timeout(10, read=0.4), **_arrow(_rows(BIG_ROWS)))  # then closes
    time.sleep(0.1)  # the bridge notices the closed connection
    at_hangup = _batches(real_bridge) - before
    time.sleep(0.4)  # ~80 batch times
    later = _batches(real_bridge) - before
    assert 0 < at_hangup < BIG_ROWS / 64 / 2
    assert later - at_hangup <= 1, (at_hangup, later)


@pytest.mark.bridge
def test_real_bridge_refuses_too_many_rows_before_any_batch(real_bridge: BridgeProcess) -> None:
    before = _batches(real_bridge)
    response = httpx.post(f"{real_bridge.url}/v1/models/steady/predict", timeout=30, **_arrow(_rows(50_001)))
    assert response.status_code == 413
    assert "limit of 50000 rows" in response.json()["error"]["message"]
    assert _batches(real_bridge) == before
