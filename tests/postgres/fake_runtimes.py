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
        columns = {
            "label": pa.array(["positive" if p else "negative" for p in positive]),
            "confidence": pa.array([0.9 if p else 0.7 for p in positive], pa.float64()),
            # the four scores of sentiment_signature(), summing to 1
            "score_positive": pa.array([0.9 if p else 0.2 for p in positive], pa.float64()),
            "score_negative": pa.array([0.05 if p else 0.7 for p in positive], pa.float64()),
            "score_neutral": pa.array([0.05 if p else 0.1 for p in positive], pa.float64()),
            "score_mixed": pa.array([0.0] * len(texts), pa.float64()),
        }
        return pa.table({name: columns[name] for name in self.manifest.signature.output_names()})


class FakeEcho(Runtime):
    """Any signature: each double output is the sum of the numeric inputs, each text output 'ok'."""

    name = "fake_echo"

    def load(self) -> None:
        pass

    def predict(self, batch: pa.Table) -> pa.Table:
        numeric = [
            c for c in batch.column_names if pa.types.is_integer(batch[c].type) or pa.types.is_floating(batch[c].type)
        ]
        total = [float(sum(row[c] or 0 for c in numeric)) for row in batch.select(numeric).to_pylist()]
        columns = {}
        for output in self.manifest.signature.outputs:
            columns[output.name] = (
                pa.array(total, pa.float64()) if output.type == "double" else pa.array(["ok"] * len(total))
            )
        return pa.table(columns)


register_runtime("fake_sentiment", f"{__name__}:FakeSentiment")
register_runtime("fake_echo", f"{__name__}:FakeEcho")
