"""The client interface every engine adapter talks to, and its in-process implementation.

`ModelClient` is what `sqlml.udfs` (DuckDB), the CLI and the demo call. `LocalClient` runs the
models in this process through a `ModelHost` (embedded mode); `sqlml.bridge.http_client.BridgeClient`
implements the same methods over HTTP, so both give the same rows.
"""

from __future__ import annotations

from typing import Any, Protocol

import pyarrow as pa

from sqlml import config
from sqlml.bridge.host import ModelHost
from sqlml.bridge.manifest import Manifest
from sqlml.bridge.registry import ModelRef, Registry
from sqlml.errors import SqlmlError


class ModelClient(Protocol):
    def models(self) -> list[dict[str, Any]]:
        """One entry per model: name, version (the default one), versions, aliases, task, runtime,
        signature, metrics, loaded; or, for a model the store cannot describe, name, versions,
        aliases, loaded and `error` (the error envelope's body)."""
        ...

    def describe(self, model: str) -> Manifest: ...

    def predict(self, model: str, batch: pa.Table) -> pa.Table: ...

    def explain(self, model: str, batch: pa.Table, top_k: int = 5) -> pa.Table: ...

    def forecast(
        self,
        model: str,
        series: list[str] | None,
        horizon: int,
        quantiles: list[str],
        future: pa.Table | None = None,
        history: pa.Table | None = None,
    ) -> pa.Table:
        """Forecast rows (series, ts, quantile, value); `future`: covariate values for the horizon
        (ts, [series,] covariates), `history`: observations to forecast from (ts, [series,] value)."""
        ...

    def evaluate(self, model: str, batch: pa.Table) -> dict[str, Any]:
        """Metrics on labelled rows (inputs and the target column): `POST /v1/models/{name}/evaluate`."""
        ...


class LocalClient:
    """Embedded mode: the models run in this process."""

    def __init__(self, registry: Registry | None = None, host: ModelHost | None = None):
        self.registry = registry or (host.registry if host else Registry(config.store_url()))
        self.host = host or ModelHost(self.registry)

    def models(self) -> list[dict[str, Any]]:
        return model_listing(self.registry, self.host)

    def describe(self, model: str) -> Manifest:
        return self.registry.describe(ModelRef.parse(model))

    def predict(self, model: str, batch: pa.Table) -> pa.Table:
        return self.host.predict(model, batch)

    def explain(self, model: str, batch: pa.Table, top_k: int = 5) -> pa.Table:
        return self.host.explain(model, batch, top_k)

    def forecast(
        self,
        model: str,
        series: list[str] | None,
        horizon: int,
        quantiles: list[str],
        future: pa.Table | None = None,
        history: pa.Table | None = None,
    ) -> pa.Table:
        return self.host.forecast(model, series, horizon, quantiles, future, history)

    def evaluate(self, model: str, batch: pa.Table) -> dict[str, Any]:
        from sqlml.bridge.evaluation import evaluate

        return evaluate(self.host, self.host.get(model), batch)


def model_listing(registry: Registry, host: ModelHost | None = None) -> list[dict[str, Any]]:
    """The rows of `sqlml models`, `GET /v1/models` and `ml.models()`. A model whose default
    version cannot be resolved or described (a corrupt manifest or `aliases.json`) is listed with
    its `error` instead of its manifest fields, so one broken model never hides the others."""
    loaded = set(host.loaded()) if host else set()
    return [_listing_row(registry, name, loaded) for name in registry.names()]


def _listing_row(registry: Registry, name: str, loaded: set[tuple[str, int]]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "version": None, "versions": registry.versions(name), "aliases": {}}
    try:
        row["aliases"] = registry.aliases(name)
        row["version"] = version = registry.resolve(ModelRef(name))
        manifest = registry.manifest(name, version)
    except SqlmlError as error:
        return {**row, "loaded": False, "error": error.to_dict()}
    return {
        **row,
        "task": manifest.task,
        "runtime": manifest.runtime,
        "description": manifest.description,
        "signature": manifest.signature.model_dump(),
        "metrics": manifest.metrics,
        "loaded": (name, version) in loaded,
    }
