"""Fixtures for the core tests: a tmp registry and fake runtimes (fast, deterministic)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sqlml.bridge.manifest import Column, Manifest, Signature
from sqlml.bridge.registry import Registry
from sqlml.bridge.runtimes import Runtime, register_runtime


class SumRuntime(Runtime):
    """Adds its inputs; the artifact holds an offset, so versions differ."""

    name = "core_offset_sum"

    def load(self) -> None:
        text = (self.path / "offset.txt").read_text()
        self.offset = float(text)  # a corrupt artifact raises here, like a real library would

    def predict(self, batch: pa.Table) -> pa.Table:
        total = pa.array([self.offset] * batch.num_rows, pa.float64())
        for column in batch.columns:
            total = pc.add(total, pc.cast(column, pa.float64()))
        return pa.table({"total": total})


@pytest.fixture(autouse=True)
def _fake_runtimes() -> None:
    register_runtime("core_offset_sum", SumRuntime)  # a name of its own: other suites register fakes too


def sum_manifest(name: str = "adder") -> Manifest:
    return Manifest(
        name=name,
        runtime="core_offset_sum",
        task="regression",
        signature=Signature(
            inputs=[Column(name="a", type="double"), Column(name="b", type="bigint")],
            outputs=[Column(name="total", type="double")],
        ),
    )


def publish_sum(registry: Registry, tmp_path: Path, offset: str, name: str = "adder", alias: str | None = None) -> int:
    artifact = tmp_path / f"artifact-{name}-{offset}"
    artifact.mkdir(exist_ok=True)
    (artifact / "offset.txt").write_text(offset)
    return registry.publish(sum_manifest(name), artifact, alias=alias).version


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "store")
