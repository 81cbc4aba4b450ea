"""Stand-ins for the real trainers in the demo test: publish fake models instantly."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from sqlml.bridge.manifest import Manifest, Signature
from sqlml.bridge.registry import Registry
from tests.udfs.fakes import MANIFESTS, col, install_fake_runtimes

LEAD_FEATURES = ("mostype", "maanthui", "mgemomv")


def _publish(registry: Registry, manifest: Manifest, alias: str | None) -> Manifest:
    install_fake_runtimes()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "weights.bin").write_bytes(b"0")
        return registry.publish(manifest, folder, alias=alias)


def train_sentiment(registry: Registry, alias: str | None = "production", progress: bool = True, **_: Any) -> Manifest:
    return _publish(registry, MANIFESTS["sentiment"], alias)


def train_leads(registry: Registry, alias: str | None = "production", progress: bool = True, **_: Any) -> Manifest:
    manifest = Manifest(
        name="lead_score",
        runtime="fake_tabular",
        task="classification",
        signature=Signature(
            inputs=[col(name, "bigint") for name in LEAD_FEATURES], outputs=[col("probability", "double")]
        ),
        metrics={"auc": 0.77},
    )
    return _publish(registry, manifest, alias)


def train_forecast(registry: Registry, alias: str | None = "production", progress: bool = True, **_: Any) -> Manifest:
    manifest = MANIFESTS["power"].model_copy(update={"name": "household_power"})
    return _publish(registry, manifest, alias)


TRAINERS = {
    "sentiment": f"{__name__}:train_sentiment",
    "lead_score": f"{__name__}:train_leads",
    "household_power": f"{__name__}:train_forecast",
}
