"""A real `sqlml serve` on a damaged store: one torn manifest, one broken alias file and a crashed
writer's debris affect their own model only; the others list and predict as usual."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from sqlml.bridge.http_client import BridgeClient
from sqlml.bridge.registry import STALE_DEBRIS_SECONDS, Registry
from sqlml.errors import InvalidName, ModelLoadError
from tests.bridge import sqlml_test_fakes as fakes
from tests.bridge.conftest import BridgeProcess

pytestmark = pytest.mark.bridge
BATCH = pa.table({"a": [1.0, 2.0], "b": [10.0, 20.0]})


def damaged_store(root: Path) -> Registry:
    registry = Registry(root)
    fakes.publish(registry, "healthy")
    fakes.publish(registry, "torn")  # v1 serves when v2's manifest is torn
    fakes.publish(registry, "torn", params={"offset": 100.0})
    fakes.publish(registry, "lost", alias="production")
    manifest = root / "torn" / "2" / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    (root / "lost" / "aliases.json").write_text('{"production": 1')
    stale = root / "healthy" / ".staging-crashed"
    stale.mkdir()
    (stale / "model.bin").write_bytes(b"half")
    then = time.time() - STALE_DEBRIS_SECONDS - 60
    for path in (stale / "model.bin", stale):
        os.utime(path, (then, then))
    return registry


def test_a_damaged_store_fails_per_model(tmp_path: Path, bridge_factory: Callable[..., BridgeProcess]) -> None:
    store = damaged_store(tmp_path / "store")
    bridge = bridge_factory(store.url)
    assert not (tmp_path / "store" / "healthy" / ".staging-crashed").exists()  # cleaned at start-up
    with BridgeClient(bridge.url, token="admin-token") as client:
        rows = {row["name"]: row for row in client.models()}
        assert sorted(rows) == ["healthy", "lost", "torn"]
        assert rows["healthy"]["task"] == "regression" and "error" not in rows["healthy"]
        assert rows["torn"]["error"]["detail"]["file"] == "torn/2/manifest.json"
        assert rows["lost"]["error"]["message"].startswith('alias file of model "lost" is not valid JSON')

        assert client.predict("healthy", BATCH).column("total").to_pylist() == [11.0, 22.0]
        assert client.predict("torn", BATCH).column("total").to_pylist() == [11.0, 22.0]  # version 1
        with pytest.raises(ModelLoadError, match=r'alias file of model "lost" .*\(lost/aliases.json\)') as lost:
            client.predict("lost", BATCH)
        assert lost.value.detail["fault"] == "store_corrupt"
        assert client.predict("lost:1", BATCH).num_rows == 2
        with pytest.raises(InvalidName, match="alias 'latest' is reserved"):
            client.set_alias("healthy", "latest", 1)

    assert bridge.metric("sqlml_store_corrupt_entries_total", model="torn") == 1.0
    assert bridge.metric("sqlml_store_corrupt_entries_total", model="lost") == 1.0
    assert bridge.metric("sqlml_store_corrupt_entries_total", model="healthy") == 0.0
