"""A real `sqlml serve` process: real HTTP, real XGBoost models, eviction, pinning, batching,
metrics, a corrupt version, SIGKILL and restart, and DuckDB through the bridge vs embedded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pyarrow as pa
import pytest

from sqlml.bridge.client import LocalClient
from sqlml.bridge.host import ModelHost
from sqlml.bridge.http_client import BridgeClient
from sqlml.bridge.manifest import Batching
from sqlml.bridge.registry import Registry
from sqlml.errors import BridgeTimeout, ModelLoadError, ModelNotFound, SqlmlError, Unauthorized, Unavailable
from tests.bridge import sqlml_test_fakes as fakes
from tests.bridge.conftest import BridgeProcess

pytestmark = pytest.mark.bridge
EVICTABLE = ["m0", "m1", "m2", "m3"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    registry = Registry(tmp_path_factory.mktemp("process") / "store")
    fakes.publish_xgboost(registry, "lead", seed=1)
    fakes.publish_xgboost(registry, "lead", corrupt=True, alias="production")
    for i, name in enumerate(EVICTABLE):
        fakes.publish_xgboost(registry, name, seed=10 + i)
    fakes.publish_xgboost(registry, "keeper", seed=20)
    fakes.publish(registry, "slowsum", params={"sleep_s": 0.03}, batching=Batching(max_batch_size=64, max_wait_ms=10))
    fakes.publish(registry, "sleepy", params={"sleep_s": 3.0})
    return registry


def model_bytes(registry: Registry, name: str) -> int:
    """The runtime's own memory estimate, which the bridge's budget counts."""
    return ModelHost(registry).get(name).nbytes


@pytest.fixture(scope="module")
def bridge(store: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    budget = int(model_bytes(store, "m0") * 2.5)  # room for two of the four evictable models
    process = BridgeProcess(store.url, tmp_path_factory.mktemp("logs"), "--memory-budget", str(budget)).start()
    yield process
    process.stop()


@pytest.fixture
def admin(bridge: BridgeProcess) -> Iterator[BridgeClient]:
    with BridgeClient(bridge.url, token="admin-token", timeout=10.0) as client:
        yield client


def features(rows: int, seed: int = 0, n: int = 4) -> pa.Table:
    data = np.random.default_rng(seed).normal(size=(rows, n))
    return pa.table({f"f{i}": data[:, i] for i in range(n)})


def loaded_versions(admin: BridgeClient) -> dict[str, bool]:
    return {m["name"]: m["loaded"] for m in admin.models()}


def test_client_matches_embedded_rows(store: Registry, admin: BridgeClient) -> None:
    local = LocalClient(store)
    batch = features(257, seed=3)
    batch = batch.set_column(
        0, "f0", pa.array([None if i % 7 == 0 else v for i, v in enumerate(batch["f0"].to_pylist())])
    )
    assert admin.predict("m1", batch).equals(local.predict("m1", batch))
    assert admin.explain("m1", batch.slice(0, 5), top_k=2).equals(local.explain("m1", batch.slice(0, 5), top_k=2))
    assert admin.describe("m1") == local.describe("m1")
    assert {m["name"] for m in admin.models()} == {m["name"] for m in local.models()}


def test_json_and_auth_over_real_http(bridge: BridgeProcess) -> None:
    body = {"rows": [{"f0": 1, "f1": 0, "f2": 0, "f3": None}, {"f0": 1.0, "f1": 2.0, "f2": 0.5, "f3": 0.0}]}
    ok = httpx.post(f"{bridge.url}/v1/models/m2/predict", json=body, headers={"Authorization": "Bearer all-token"})
    rows = ok.json()["rows"]
    assert rows[0] == {"probability": None}
    assert 0.0 < rows[1]["probability"] < 1.0
    with BridgeClient(bridge.url) as anonymous, pytest.raises(Unauthorized):
        anonymous.predict("m2", features(1))
    traversal = f"{bridge.url}/v1/models/..%2F..%2Fetc%2Fpasswd"
    assert httpx.get(traversal).status_code == 401  # anonymous: refused before routing
    assert httpx.get(traversal, headers={"Authorization": "Bearer all-token"}).status_code == 404


def test_unknown_model_error_is_rebuilt(admin: BridgeClient) -> None:
    with pytest.raises(ModelNotFound) as caught:
        admin.predict("m9", features(1))
    assert caught.value.code == "model_not_found"
    assert "did you mean" in (caught.value.hint or "")


def test_corrupt_version_fails_clearly_while_previous_serves(admin: BridgeClient, bridge: BridgeProcess) -> None:
    result = admin.predict("lead", features(3))
    assert result.num_rows == 3
    assert admin.describe("lead").version == 2  # production points at the corrupt version...
    with pytest.raises(ModelLoadError) as caught:
        admin.predict("lead:2", features(1))
    assert 'model "lead" version 2 failed to load' in caught.value.message
    assert bridge.metric("sqlml_model_load_failures_total", model="lead", version="2") >= 1
    loaded = httpx.get(f"{bridge.url}/v1/models/lead", headers={"Authorization": "Bearer admin-token"}).json()
    assert loaded["loaded"] == [1]  # ...and version 1 is what serves


def test_eviction_keeps_models_under_the_budget(admin: BridgeClient, bridge: BridgeProcess) -> None:
    for _round in range(2):
        for name in EVICTABLE:
            assert admin.predict(name, features(2)).num_rows == 2
    loaded = [name for name, is_loaded in loaded_versions(admin).items() if is_loaded and name in EVICTABLE]
    assert 1 <= len(loaded) <= 2
    assert loaded_versions(admin)["m3"] is True  # the most recently used stays
    assert bridge.metric("sqlml_model_unload_seconds_count") >= 4
    assert bridge.metric("sqlml_loaded_model_bytes") <= bridge.metric("sqlml_memory_budget_bytes")
    assert bridge.metric("sqlml_model_cache_misses_total", model="m0") >= 2


def test_pinned_model_survives_pressure(admin: BridgeClient) -> None:
    admin.pin("keeper")
    try:
        for name in EVICTABLE:
            admin.predict(name, features(1))
        assert loaded_versions(admin)["keeper"] is True
    finally:
        admin.unpin("keeper")


def test_batcher_coalesces_concurrent_single_rows(admin: BridgeClient, bridge: BridgeProcess) -> None:
    batch = pa.table({"a": [1.0], "b": [2.0]})
    with ThreadPoolExecutor(16) as pool:
        clients = [BridgeClient(bridge.url, token="all-token") for _ in range(16)]
        results = list(pool.map(lambda c: c.predict("slowsum", batch), clients * 3))
        for client in clients:
            client.close()
    assert all(r.column("total").to_pylist() == [3.0] for r in results)
    batches = bridge.metric("sqlml_batch_size_requests_count", model="slowsum")
    requests = bridge.metric("sqlml_batch_size_requests_sum", model="slowsum")
    assert requests == 48
    assert batches < requests  # some runtime calls served several requests
    assert bridge.metric("sqlml_batch_size_rows_bucket", model="slowsum", le="1.0") < batches
    assert bridge.metric("sqlml_requests_total", model="slowsum", version="1", operation="predict") == 48


def test_metrics_cover_hits_latency_and_errors(admin: BridgeClient, bridge: BridgeProcess) -> None:
    admin.predict("m3", features(1))
    with pytest.raises(SqlmlError):
        admin.predict("Bad", features(1))
    assert bridge.metric("sqlml_model_cache_hits_total") > 0
    assert bridge.metric("sqlml_request_latency_seconds_count", operation="predict") > 0
    assert bridge.metric("sqlml_errors_total", code="invalid_name") >= 1
    assert bridge.metric("sqlml_loaded_models") >= 1


def test_duckdb_through_bridge_equals_embedded(store: Registry, admin: BridgeClient) -> None:
    import sqlml.udfs

    query = "SELECT i, ml.m0(f0, f1, f2, f3) AS p FROM t ORDER BY i"
    table = features(3000, seed=5).append_column("i", pa.array(range(3000)))
    results = []
    for client in (admin, LocalClient(store)):
        con = duckdb.connect()
        sqlml.udfs.register(con, client)
        con.register("t", table)
        results.append(con.sql(query).fetchall())
        con.close()
    assert results[0] == results[1]
    assert len(results[0]) == 3000


def _start_killable(store: Registry, factory: Callable[..., BridgeProcess]) -> BridgeProcess:
    return factory(store.url, "--no-auth")


def test_sigkill_fails_fast_and_restart_recovers(store: Registry, bridge_factory: Callable[..., BridgeProcess]) -> None:
    bridge = _start_killable(store, bridge_factory)
    client = BridgeClient(bridge.url, timeout=5.0)
    assert client.predict("m0", features(1)).num_rows == 1
    outcome: dict[str, object] = {}

    def call_slow() -> None:
        started = time.monotonic()
        try:
            client.predict("sleepy", pa.table({"a": [1.0], "b": [1.0]}))
        except SqlmlError as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=call_slow)
    worker.start()
    time.sleep(0.5)
    bridge.kill()
    worker.join(10)
    assert isinstance(outcome["error"], Unavailable)
    assert bridge.url in str(outcome["error"])
    assert float(outcome["seconds"]) < 5.0  # fails on the dropped connection, not by timing out
    started = time.monotonic()
    with pytest.raises(Unavailable, match="unreachable"):
        client.predict("m0", features(1))
    assert time.monotonic() - started < 2.0
    bridge.start()
    assert client.predict("m0", features(1)).num_rows == 1  # the same client recovers by itself
    client.close()


def test_sigkill_during_duckdb_query(store: Registry, bridge_factory: Callable[..., BridgeProcess]) -> None:
    import sqlml.udfs

    bridge = _start_killable(store, bridge_factory)
    client = BridgeClient(bridge.url, timeout=5.0)
    con = duckdb.connect()
    sqlml.udfs.register(con, client)
    outcome: dict[str, object] = {}

    def query() -> None:
        started = time.monotonic()
        try:
            con.sql("SELECT sum(ml.sleepy(a, b)) FROM (SELECT 1.0 AS a, 2.0 AS b)").fetchall()
        except duckdb.Error as exc:
            outcome["error"] = str(exc)
        outcome["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=query)
    worker.start()
    time.sleep(0.7)
    bridge.kill()
    worker.join(10)
    assert "bridge at" in str(outcome.get("error")), outcome
    assert float(outcome["seconds"]) < 5.0
    bridge.start()
    assert con.sql("SELECT ml.m0(0.1, 0.2, 0.3, 0.4) IS NOT NULL").fetchall() == [(True,)]
    con.close()
    client.close()


def test_slow_bridge_times_out_on_the_client(store: Registry, bridge: BridgeProcess) -> None:
    with BridgeClient(bridge.url, token="admin-token", timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(BridgeTimeout, match=r"did not answer within 0\.5 s"):
            client.predict("sleepy", pa.table({"a": [1.0], "b": [1.0]}))
        assert time.monotonic() - started < 2.0


def test_graceful_shutdown(store: Registry, bridge_factory: Callable[..., BridgeProcess], tmp_path: Path) -> None:
    bridge = _start_killable(store, bridge_factory)
    assert bridge.process is not None
    bridge.stop()
    # uvicorn finishes the lifespan shutdown, then re-raises the SIGTERM it caught
    assert bridge.process.returncode in (0, -15)
    assert "Application shutdown complete" in bridge.log.read_text()
