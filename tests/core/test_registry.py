"""The registry: immutable versions, aliases, atomic publishing, lookups and safe names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sqlml.bridge.registry import ModelRef, Registry
from sqlml.errors import Conflict, InvalidName, ModelNotFound, VersionNotFound

from .conftest import publish_sum, sum_manifest


def test_versions_are_numbered_and_listed(registry: Registry, tmp_path: Path) -> None:
    assert publish_sum(registry, tmp_path, "1") == 1
    assert publish_sum(registry, tmp_path, "2") == 2
    assert registry.names() == ["adder"]
    assert registry.versions("adder") == [1, 2]
    manifest = registry.manifest("adder", 2)
    assert manifest.version == 2
    assert (Path(registry.root) / "adder" / "2" / "offset.txt").read_text() == "2"


def test_resolution_prefers_production_then_latest(registry: Registry, tmp_path: Path) -> None:
    publish_sum(registry, tmp_path, "1", alias="production")
    publish_sum(registry, tmp_path, "2")
    assert registry.resolve("adder") == 1
    assert registry.resolve("adder:latest") == 2
    assert registry.resolve("adder:2") == 2
    registry.set_alias("adder", "staging", 2)
    assert registry.resolve("adder:staging") == 2
    registry.remove_alias("adder", "production")
    assert registry.resolve("adder") == 2


def test_rollback_moves_the_alias_back(registry: Registry, tmp_path: Path) -> None:
    for offset in "123":
        publish_sum(registry, tmp_path, offset, alias="production")
    assert registry.resolve("adder") == 3
    assert registry.rollback("adder") == 2
    assert registry.resolve("adder") == 2
    assert registry.rollback("adder") == 1
    with pytest.raises(Conflict, match="no version older"):
        registry.rollback("adder")


def test_unknown_names_suggest_close_ones(registry: Registry, tmp_path: Path) -> None:
    publish_sum(registry, tmp_path, "1", name="lead_score")
    with pytest.raises(ModelNotFound) as caught:
        registry.resolve("lead_scor")
    assert 'model "lead_scor" not found' in str(caught.value)
    assert "lead_score" in (caught.value.hint or "")
    with pytest.raises(VersionNotFound, match='no version or alias "nope"'):
        registry.resolve("lead_score:nope")


@pytest.mark.parametrize("name", ["../etc", "Lead", "a/b", "", "x" * 64, "1abc", "a;drop table t", "a b"])
def test_unsafe_names_are_refused(registry: Registry, name: str) -> None:
    with pytest.raises(InvalidName):
        ModelRef.parse(name)
    with pytest.raises(InvalidName):
        sum_manifest(name)


def test_a_half_written_version_is_never_listed(registry: Registry, tmp_path: Path) -> None:
    publish_sum(registry, tmp_path, "1", alias="production")
    # A crash mid-write leaves a version folder without its manifest (or a hidden staging folder).
    (Path(registry.root) / "adder" / "2").mkdir()
    (Path(registry.root) / "adder" / "2" / "offset.txt").write_text("half")
    (Path(registry.root) / "adder" / ".staging-dead").mkdir()
    assert registry.versions("adder") == [1]
    assert registry.resolve("adder:latest") == 1
    # The next publish skips the claimed number instead of overwriting it.
    assert publish_sum(registry, tmp_path, "3") == 3


def test_versions_are_immutable(registry: Registry, tmp_path: Path) -> None:
    publish_sum(registry, tmp_path, "1")
    publish_sum(registry, tmp_path, "2")
    assert json.loads((Path(registry.root) / "adder" / "1" / "manifest.json").read_text())["version"] == 1
    assert (Path(registry.root) / "adder" / "1" / "offset.txt").read_text() == "1"


def test_alias_writes_are_atomic(registry: Registry, tmp_path: Path) -> None:
    publish_sum(registry, tmp_path, "1", alias="production")
    leftovers = [p for p in os.listdir(Path(registry.root) / "adder") if p.endswith(".tmp")]
    assert leftovers == []


def test_memory_store_url_works() -> None:
    registry = Registry("memory://sqlml-test-store")
    assert registry.names() == []
    with pytest.raises(ModelNotFound):
        registry.resolve("anything")
