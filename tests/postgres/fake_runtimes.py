"""A fake sentiment runtime the test bridge imports through SQLML_PLUGINS (no transformers needed)."""

from __future__ import annotations

import pyarrow as pa

from sqlml.bridge.runtimes import register_runtime
from sqlml.bridge.runtimes.base import Runtime


class FakeSentiment(Runtime):
    name = "fake_sentiment"

    def load(self) -> None:
        pass

    def predict(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("text").to_pylist()
        positive = ["good" in t or "great" in t for t in texts]
        return pa.table(
            {
                "label": pa.array(["positive" if p else "negative" for p in positive]),
                "confidence": pa.array([0.9 if p else 0.7 for p in positive], pa.float64()),
            }
        )


register_runtime("fake_sentiment", f"{__name__}:FakeSentiment")
