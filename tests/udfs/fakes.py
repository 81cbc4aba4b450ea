"""Fake runtimes for the DuckDB and CLI tests: deterministic, instant, and shaped like the real ones."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from sqlml.bridge.manifest import Column, Manifest, Signature
from sqlml.bridge.registry import Registry
from sqlml.bridge.runtimes import RUNTIMES, Runtime, register_runtime

NEGATIVE_WORDS = ("stinks", "never", "awful", "bad")
POSITIVE_WORDS = ("great", "love", "excellent")
FORECAST_SERIES = ("global_active_power", "sub_metering_1")
FORECAST_START = datetime(2010, 11, 26, 22)


class KeywordSentiment(Runtime):
    """Labels a text by keyword; empty or blank text gets NULL outputs, like the real model."""

    name = "fake_keyword_sentiment"

    def load(self) -> None:
        pass

    def predict(self, batch: pa.Table) -> pa.Table:
        labels, confidences = [], []
        for text in batch.column("text").to_pylist():
            lowered = text.lower()
            if not lowered.strip():
                labels.append(None)
                confidences.append(None)
            elif any(w in lowered for w in NEGATIVE_WORDS):
                labels.append("negative")
                confidences.append(0.9)
            elif any(w in lowered for w in POSITIVE_WORDS):
                labels.append("positive")
                confidences.append(0.8)
            else:
                labels.append("neutral")
                confidences.append(0.5)
        return pa.table({"label": pa.array(labels, pa.string()), "confidence": pa.array(confidences, pa.float64())})


class SumTabular(Runtime):
    """`total` = the sum of the inputs; explain gives each input as its own contribution."""

    name = "fake_tabular"

    def load(self) -> None:
        pass

    def predict(self, batch: pa.Table) -> pa.Table:
        total = pa.array([0.0] * batch.num_rows, pa.float64())
        for column in batch.columns:
            total = pc.add(total, pc.cast(column, pa.float64()))
        return pa.table({self.manifest.signature.outputs[0].name: total})

    def explain(self, batch: pa.Table, top_k: int) -> pa.Table:
        names = batch.column_names
        rows = []
        for row in batch.to_pylist():
            items = [{"feature": n, "value": float(row[n]), "contribution": float(row[n])} for n in names]
            items.sort(key=lambda item: -abs(item["contribution"]))
            rows.append(items[:top_k])
        contribution = pa.struct([("feature", pa.string()), ("value", pa.float64()), ("contribution", pa.float64())])
        return pa.table(
            {
                "contributions": pa.array(rows, pa.list_(contribution)),
                "bias": pa.array([0.0] * len(rows)),
                "margin": pa.array([sum(i["contribution"] for i in r) for r in rows]),
            }
        )


class StampRuntime(Runtime):
    """Two outputs of mixed types from a timestamp and a text: exercises struct outputs."""

    name = "fake_stamp"

    def load(self) -> None:
        pass

    def predict(self, batch: pa.Table) -> pa.Table:
        hours = pc.hour(batch.column("at"))
        notes = pc.utf8_upper(batch.column("note"))
        return pa.table({"hour": pc.cast(hours, pa.int64()), "shout": notes})


class LinearForecast(Runtime):
    """value = step + quantile number (p50 at step 3 is 53.0); mean counts as 50."""

    name = "fake_forecast"

    def load(self) -> None:
        pass

    def forecast(self, series: list[str] | None, horizon: int, quantiles: list[str]) -> pa.Table:
        from sqlml.errors import InvalidInput

        if not 1 <= horizon <= 168:
            raise InvalidInput(f"horizon must be between 1 and 168 hours, got {horizon}")
        names = list(FORECAST_SERIES) if series is None else series
        rows: dict[str, list[object]] = {"series": [], "ts": [], "quantile": [], "value": []}
        for name in names:
            for step in range(1, horizon + 1):
                for quantile in quantiles:
                    rows["series"].append(name)
                    rows["ts"].append(FORECAST_START + timedelta(hours=step))
                    rows["quantile"].append(quantile)
                    rows["value"].append(step + (50.0 if quantile == "mean" else float(quantile[1:])))
        return pa.table(
            {
                "series": pa.array(rows["series"], pa.string()),
                "ts": pa.array(rows["ts"], pa.timestamp("us")),
                "quantile": pa.array(rows["quantile"], pa.string()),
                "value": pa.array(rows["value"], pa.float64()),
            }
        )

    def predict(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError


def install_fake_runtimes() -> None:
    for runtime in (KeywordSentiment, SumTabular, StampRuntime, LinearForecast):
        if runtime.name not in RUNTIMES:
            register_runtime(runtime.name, runtime)


def col(name: str, type_: str) -> Column:
    return Column(name=name, type=type_)  # type: ignore[arg-type]


MANIFESTS = {
    "sentiment": Manifest(
        name="sentiment",
        runtime="fake_keyword_sentiment",
        task="sentiment",
        signature=Signature(inputs=[col("text", "text")], outputs=[col("label", "text"), col("confidence", "double")]),
        metrics={"auc": 0.9},
    ),
    "adder": Manifest(
        name="adder",
        runtime="fake_tabular",
        task="regression",
        signature=Signature(
            inputs=[col("a", "bigint"), col("b", "double"), col("c", "bigint")], outputs=[col("total", "double")]
        ),
        metrics={"rmse": 0.0},
    ),
    "stamp": Manifest(
        name="stamp",
        runtime="fake_stamp",
        task="regression",
        signature=Signature(
            inputs=[col("at", "timestamp"), col("note", "text")], outputs=[col("hour", "bigint"), col("shout", "text")]
        ),
    ),
    "power": Manifest(
        name="power",
        runtime="fake_forecast",
        task="forecast",
        signature=Signature(
            inputs=[col("series", "text"), col("horizon", "bigint"), col("quantile", "text")],
            outputs=[col("series", "text"), col("ts", "timestamp"), col("quantile", "text"), col("value", "double")],
        ),
    ),
}


def publish_fakes(registry: Registry, tmp_path: Path, names: tuple[str, ...] = tuple(MANIFESTS)) -> None:
    install_fake_runtimes()
    artifact = tmp_path / "empty-artifact"
    artifact.mkdir(exist_ok=True)
    (artifact / "weights.bin").write_bytes(b"0")
    for name in names:
        registry.publish(MANIFESTS[name], artifact, alias="production")
