"""The model host: lazy loading, one load under concurrency, LRU under a budget, pinning,
NULL in / NULL out, order preservation, and the fallback when a new version is corrupt."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from sqlml.bridge.host import HostEvents, ModelHost
from sqlml.bridge.registry import Registry
from sqlml.bridge.runtimes import register_runtime
from sqlml.errors import InvalidInput, ModelLoadError, SqlmlError
from tests.call_gauge import CallGauge

from .conftest import SumRuntime, publish_sum, sum_manifest


class CountingEvents(HostEvents):
    def __init__(self) -> None:
        self.loads: list[tuple[str, int]] = []
        self.unloads: list[tuple[str, int]] = []
        self.failures: list[str] = []
        self.hits = 0

    def loaded(self, name: str, version: int, seconds: float, nbytes: int) -> None:
        self.loads.append((name, version))

    def unloaded(self, name: str, version: int, seconds: float) -> None:
        self.unloads.append((name, version))

    def cache_hit(self, name: str, version: int) -> None:
        self.hits += 1

    def load_failed(self, name: str, version: int, error: SqlmlError) -> None:
        self.failures.append(error.message)


def batch(a: list[float | None], b: list[int | None]) -> pa.Table:
    return pa.table({"a": pa.array(a, pa.float64()), "b": pa.array(b, pa.int64())})


def test_predicts_in_order_with_nulls_in_place(registry: Registry, tmp_path: Path) -> None:
    publish_sum(registry, tmp_path, "100")
    host = ModelHost(registry)
    out = host.predict("adder", batch([1.0, None, 3.0, 4.0], [10, 20, None, 40]))
    assert out.column("total").to_pylist() == [111.0, None, None, 144.0]


def test_all_null_and_empty_batches(registry: Registry, tmp_path: Path) -> None:
    publish_sum(registry, tmp_path, "0")
    host = ModelHost(registry)
    assert host.predict("adder", batch([None, None], [None, 1])).column("total").to_pylist() == [None, None]
    assert host.predict("adder", batch([], [])).num_rows == 0


def test_signature_errors_name_the_column(registry: Registry, tmp_path: Path) -> None:
    publish_sum(registry, tmp_path, "0")
    host = ModelHost(registry)
    with pytest.raises(InvalidInput, match='missing input column "b"'):
        host.predict("adder", pa.table({"a": [1.0]}))
    with pytest.raises(InvalidInput, match='no input column "bb"') as caught:
        host.predict("adder", pa.table({"a": [1.0], "b": [1], "bb": [2]}))
    assert "'b'" in (caught.value.hint or "")
    with pytest.raises(InvalidInput, match='column "a" of model "adder" must be a number, got text'):
        host.predict("adder", pa.table({"a": ["x"], "b": [1]}))
    with pytest.raises(InvalidInput, match='column "b"'):
        host.predict("adder", pa.table({"a": [1.0], "b": [1.5]}))  # lossy cast refused


def test_concurrent_first_requests_load_once(registry: Registry, tmp_path: Path) -> None:
    publish_sum(registry, tmp_path, "1")
    events = CountingEvents()
    host = ModelHost(registry, events=events)
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait()
        host.predict("adder", batch([1.0], [1]))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert events.loads == [("adder", 1)]


def test_lru_eviction_under_budget_and_pinning(registry: Registry, tmp_path: Path) -> None:
    for name in ("m1", "m2", "m3"):
        publish_sum(registry, tmp_path, "1", name=name)
    one_model = ModelHost(registry).get("m1").nbytes
    events = CountingEvents()
    host = ModelHost(registry, memory_budget=2 * one_model, events=events)
    host.pin("m1")
    for name in ("m1", "m2", "m3"):
        host.predict(name, batch([1.0], [1]))
    # m2 is the least recently used unpinned model: it goes, the pinned m1 stays.
    assert sorted(host.loaded()) == [("m1", 1), ("m3", 1)]
    assert events.unloads == [("m2", 1)]
    assert host.loaded_bytes() <= 2 * one_model


def test_corrupt_new_version_keeps_previous_serving(registry: Registry, tmp_path: Path) -> None:
    publish_sum(registry, tmp_path, "1", alias="production")
    publish_sum(registry, tmp_path, "not-a-number", alias="production")
    events = CountingEvents()
    host = ModelHost(registry, events=events)
    out = host.predict("adder", batch([1.0], [1]))
    assert out.column("total").to_pylist() == [3.0]  # served by version 1
    assert events.failures and "version 2 failed to load" in events.failures[0]
    with pytest.raises(ModelLoadError, match='model "adder" version 2 failed to load'):
        host.predict("adder:2", batch([1.0], [1]))


class _MeetingSum(SumRuntime):
    """Thread-safe: each call waits until another call is inside predict too."""

    thread_safe = True
    meeting = threading.Barrier(2, timeout=10)

    def predict(self, batch: pa.Table) -> pa.Table:
        self.meeting.wait()  # BrokenBarrierError after 10 s if the host ran calls one at a time
        return super().predict(batch)


class _CountedSum(SumRuntime):
    """Not thread-safe (the default): records how many calls were inside predict at once."""

    gauge = CallGauge()

    def predict(self, batch: pa.Table) -> pa.Table:
        with self.gauge.inside(self.manifest.name):
            time.sleep(0.05)
        return super().predict(batch)


def _publish_as(registry: Registry, tmp_path: Path, name: str, runtime: type[SumRuntime]) -> None:
    register_runtime(runtime.__name__, runtime)
    artifact = tmp_path / f"artifact-{name}"
    artifact.mkdir()
    (artifact / "offset.txt").write_text("0")
    registry.publish(sum_manifest(name).model_copy(update={"runtime": runtime.__name__}), artifact)


def _predict_from_threads(host: ModelHost, name: str, threads: int) -> list[list[float]]:
    results: list[list[float]] = [[] for _ in range(threads)]

    def call(i: int) -> None:
        results[i] = host.predict(name, batch([float(i)], [1])).column("total").to_pylist()

    workers = [threading.Thread(target=call, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def test_a_thread_safe_runtime_serves_concurrent_calls_side_by_side(registry: Registry, tmp_path: Path) -> None:
    _publish_as(registry, tmp_path, "meeting", _MeetingSum)
    host = ModelHost(registry)
    host.get("meeting")
    assert _predict_from_threads(host, "meeting", 2) == [[1.0], [2.0]]


def test_other_runtimes_get_one_call_at_a_time(registry: Registry, tmp_path: Path) -> None:
    _publish_as(registry, tmp_path, "counted", _CountedSum)
    host = ModelHost(registry)
    host.get("counted")
    assert _predict_from_threads(host, "counted", 4) == [[1.0], [2.0], [3.0], [4.0]]
    assert _CountedSum.gauge.most["counted"] == 1
