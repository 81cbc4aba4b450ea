"""The small interface every model family implements (after MLServer's `MLModel`).

A runtime loads one model version from a local folder and predicts on whole Arrow batches whose
columns already match the manifest's signature (validated and cast by `sqlml.bridge.signature`,
rows with NULL in an input that is not `nullable` removed). Runtimes hold no batching, caching or
metrics code: the model host wraps them with that.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from sqlml.bridge.manifest import Manifest
from sqlml.errors import NotSupported


class Runtime(ABC):
    """One loaded model version."""

    #: the `runtime` value in manifests that selects this class
    name: ClassVar[str]
    #: True when one loaded instance may serve concurrent calls. The host then lets them run side
    #: by side (embedded DuckDB calls a UDF from each of its threads); otherwise it runs one call
    #: at a time per instance. The bridge's batcher runs one call per version either way.
    thread_safe: ClassVar[bool] = False

    def __init__(self, manifest: Manifest, path: Path):
        self.manifest = manifest
        self.path = Path(path)

    @abstractmethod
    def load(self) -> None:
        """Read the artifact into memory. Raise on a corrupt or missing artifact."""

    @abstractmethod
    def predict(self, batch: pa.Table) -> pa.Table:
        """One output row per input row, in order, with the signature's output columns."""

    def explain(self, batch: pa.Table, top_k: int) -> pa.Table:
        """Per-row feature contributions: columns `contributions` (list of struct feature,
        value, contribution, sorted by absolute contribution, at most `top_k`) and `bias`."""
        raise NotSupported(f'model "{self.manifest.name}" ({self.name}) does not support explain')

    def forecast(
        self,
        series: list[str] | None,
        horizon: int,
        quantiles: list[str],
        future: pa.Table | None = None,
        history: pa.Table | None = None,
    ) -> pa.Table:
        """Long-format forecast rows: series, ts, quantile, value. `future` holds covariate values
        for the horizon (ts, [series,] covariates), `history` observations to forecast from in place
        of the stored ones (ts, [series,] value); the host passes them only when a caller gave them."""
        raise NotSupported(f'model "{self.manifest.name}" ({self.name}) does not forecast')

    def drain_counts(self) -> dict[str, int]:
        """Events the runtime counted since the last call (e.g. `unseen_category:<feature>`); the
        host reports them as metrics, so the runtime holds no metrics code."""
        return {}

    def unload(self) -> None:
        """Drop references to the model so its memory can be reclaimed."""

    def memory_bytes(self) -> int:
        """Estimated resident size, used by the host's memory budget."""
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
