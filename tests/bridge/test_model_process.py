"""Model processes (`model_processes`): the same answers and errors as a runtime in the bridge's
own process, a crash that fails one call and not the bridge, and no process left behind."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from sqlml.bridge.host import HostEvents, ModelHost
from sqlml.bridge.model_process import ProcessRuntime
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings
from sqlml.errors import ModelLoadError, NotSupported, SqlmlError, Unavailable
from tests.bridge import sqlml_test_fakes as fakes
from tests.bridge.conftest import BridgeProcess

ROWS = pa.table({"a": [1.0, None, 3.0], "b": [2.0, 5.0, -1.0]})


@pytest.fixture
def store(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "store")
    fakes.publish(registry, "sum", params={"offset": 10.0})
    fakes.publish(registry, "slow", params={"sleep_s": 3.0})
    fakes.publish(registry, "echo", "fake_echo")
    fakes.publish(registry, "failing", "fake_error")
    fakes.publish(registry, "guarded")  # v1 loads
    fakes.publish(registry, "guarded", "fake_corrupt")  # v2 is corrupt
    return registry


class CrashLog(HostEvents):
    def __init__(self) -> None:
        self.crashes: list[tuple[str, int, str]] = []

    def model_process_crashed(self, name: str, version: int, how: str) -> None:
        self.crashes.append((name, version, how))


@pytest.fixture
def crash_log() -> CrashLog:
    return CrashLog()


@pytest.fixture
def host(store: Registry, crash_log: CrashLog) -> Iterator[ModelHost]:
    host = ModelHost(store, model_processes=["*"], events=crash_log)
    yield host
    for name in {name for name, _ in host.loaded()}:
        host.unload(name)


def process_of(host: ModelHost, name: str) -> ProcessRuntime:
    runtime = host.get(name).runtime
    assert isinstance(runtime, ProcessRuntime)
    return runtime


def gone(pid: int, seconds: float = 10.0) -> bool:
    """Whether the process ends within `seconds` (model processes are reaped in the background)."""
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0  # a zombie is gone too


def test_answers_match_the_runtime_in_the_bridges_process(store: Registry, host: ModelHost) -> None:
    assert host.predict("sum", ROWS).equals(ModelHost(store).predict("sum", ROWS))
    assert host.explain("sum", ROWS).equals(ModelHost(store).explain("sum", ROWS))
    assert host.forecast("sum", ["x"], 2, ["p50"]).equals(ModelHost(store).forecast("sum", ["x"], 2, ["p50"]))
    pid = process_of(host, "sum").pid
    assert pid is not None and pid != os.getpid() and alive(pid)


def test_only_the_named_runtimes_get_a_process(store: Registry) -> None:
    host = ModelHost(store, model_processes=["fake_echo"])
    assert isinstance(host.get("echo").runtime, ProcessRuntime)
    assert not isinstance(host.get("sum").runtime, ProcessRuntime)
    host.unload("echo")


def test_errors_keep_their_type_and_code(host: ModelHost) -> None:
    with pytest.raises(SqlmlError, match="failed in predict: ValueError: the fake model always fails") as failed:
        host.predict("failing", pa.table({"a": [1.0], "b": [2.0]}))
    assert failed.value.code == "internal_error" and isinstance(failed.value.__cause__, ValueError)
    with pytest.raises(NotSupported, match='"echo"') as raised:
        host.explain("echo", pa.table({"text": ["hi"]}))
    assert raised.value.code == "not_supported"
    assert host.predict("failing", pa.table({"a": [None], "b": [2.0]})).column("total").to_pylist() == [None]


def test_a_corrupt_version_fails_to_load_leaves_no_process_and_the_previous_one_serves(
    store: Registry, host: ModelHost
) -> None:
    with pytest.raises(ModelLoadError, match="artifact checksum mismatch") as raised:
        host.get("guarded:2")
    assert raised.value.hint and "corrupt" in raised.value.hint
    assert host.loaded() == []
    assert host.predict("guarded", pa.table({"a": [1.0], "b": [1.0]})).column("total").to_pylist() == [2.0]
    assert host.loaded() == [("guarded", 1)]


def test_the_budget_counts_the_processes_resident_memory(host: ModelHost) -> None:
    model = host.get("sum")
    assert model.nbytes > 10 * 2**20  # the fake says 1,000 bytes; an interpreter with pyarrow is far more
    assert host.loaded_bytes() == model.nbytes


def test_unload_stops_the_process(host: ModelHost, crash_log: CrashLog) -> None:
    pid = process_of(host, "sum").pid
    assert pid is not None
    assert host.unload("sum") == 1
    assert gone(pid)
    assert crash_log.crashes == []  # an unload is no crash


def test_a_killed_process_fails_its_call_clearly_and_the_next_call_starts_a_new_one(
    host: ModelHost, crash_log: CrashLog
) -> None:
    slow = process_of(host, "slow")
    first = slow.pid
    assert first is not None
    errors: list[BaseException] = []

    def call() -> None:
        try:
            host.predict("slow", pa.table({"a": [1.0], "b": [2.0]}))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    time.sleep(0.5)  # the call is in the child's 3 s sleep
    os.kill(first, signal.SIGKILL)
    worker.join(10)
    assert len(errors) == 1 and isinstance(errors[0], SqlmlError)
    assert errors[0].code == "internal_error"
    assert str(errors[0]).startswith('model "slow" version 1: its process was killed by SIGKILL during predict')
    assert "next call starts a new process" in str(errors[0])
    assert host.predict("slow", pa.table({"a": [1.0], "b": [2.0]})).column("total").to_pylist() == [3.0]
    assert slow.pid not in (None, first)
    assert crash_log.crashes == [("slow", 1, "was killed by SIGKILL")]


def test_a_process_that_died_between_calls_is_replaced_by_the_next_call(host: ModelHost, crash_log: CrashLog) -> None:
    runtime = process_of(host, "sum")
    first = runtime.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)  # as the OOM killer would, while the model is idle
    # Not `gone(first)`: /proc shows a zombie leader while its other threads still exit, and until
    # they have, the process cannot be reaped and a call could still reach its socket.
    deadline = time.monotonic() + 10
    while runtime.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not runtime.running
    assert host.predict("sum", ROWS).column("total").to_pylist() == [13.0, None, 12.0]
    assert runtime.pid not in (None, first)
    assert crash_log.crashes == [("sum", 1, "was killed by SIGKILL")]


def test_unload_during_a_call_lets_it_finish_then_stops_the_process(host: ModelHost) -> None:
    slow = process_of(host, "slow")
    pid = slow.pid
    assert pid is not None
    results: list[pa.Table] = []
    worker = threading.Thread(target=lambda: results.append(host.predict("slow", pa.table({"a": [1.0], "b": [1.0]}))))
    worker.start()
    time.sleep(0.5)
    host.unload("slow")
    assert alive(pid)  # the running call keeps its process
    worker.join(10)
    assert results[0].column("total").to_pylist() == [2.0]
    assert gone(pid)
    with pytest.raises(Unavailable, match="unloaded while this call waited"):
        slow.predict(pa.table({"a": [1.0], "b": [1.0]}))


def test_settings_name_the_runtimes_from_the_environment() -> None:
    settings = BridgeSettings.load(env={"SQLML_MODEL_PROCESSES": "sentiment, xgboost"})
    assert settings.model_processes == ["sentiment", "xgboost"]
    assert BridgeSettings.load(env={}).model_processes == []


def model_processes_of(bridge: BridgeProcess) -> list[int]:
    """The bridge's model processes (children of any of its threads: models load in worker threads)."""
    assert bridge.process is not None
    tasks = Path(f"/proc/{bridge.process.pid}/task").iterdir()
    children = [pid for task in tasks for pid in (task / "children").read_text().split()]
    command = b"sqlml.bridge.model_process"
    return sorted(int(pid) for pid in children if command in Path(f"/proc/{pid}/cmdline").read_bytes())


@pytest.mark.bridge
def test_a_real_bridge_survives_its_model_process_being_killed(
    store: Registry, bridge_factory: Callable[..., BridgeProcess]
) -> None:
    bridge = bridge_factory(store.url, "--no-auth", env={"SQLML_MODEL_PROCESSES": "fake_sum"})
    body = {"rows": [{"a": 1.0, "b": 2.0}]}
    with httpx.Client(base_url=bridge.url, timeout=30) as http:
        assert http.post("/v1/models/sum/predict", json=body).json()["rows"] == [{"total": 13.0}]
        (sum_process,) = model_processes_of(bridge)
        answers: list[httpx.Response] = []
        worker = threading.Thread(target=lambda: answers.append(http.post("/v1/models/slow/predict", json=body)))
        worker.start()
        deadline = time.monotonic() + 20
        while not http.get("/v1/models/slow").json()["loaded"] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # loaded, and the call is in the child's 3 s sleep
        (slow_process,) = set(model_processes_of(bridge)) - {sum_process}
        os.kill(slow_process, signal.SIGKILL)
        worker.join(20)
        assert answers[0].status_code == 500
        error = answers[0].json()["error"]
        assert error["code"] == "internal_error"
        assert "its process was killed by SIGKILL during predict" in error["message"]
        assert bridge.metric("sqlml_model_process_crashes_total", model="slow", version="1") == 1
        assert http.post("/v1/models/sum/predict", json=body).json()["rows"] == [{"total": 13.0}]
        seen = model_processes_of(bridge)
    bridge.stop()
    assert "Application shutdown complete" in bridge.log.read_text()
    assert seen == [sum_process] and gone(sum_process)  # a graceful stop stops the model processes


@pytest.mark.bridge
def test_model_processes_end_when_their_bridge_is_killed(
    store: Registry, bridge_factory: Callable[..., BridgeProcess]
) -> None:
    bridge = bridge_factory(store.url, "--no-auth", "--model-processes", "*")
    httpx.post(f"{bridge.url}/v1/models/sum/predict", json={"rows": [{"a": 1.0, "b": 2.0}]}, timeout=30)
    (child,) = model_processes_of(bridge)
    bridge.kill()
    assert gone(child)  # it reads the end of its pipe and exits
