"""Fake runtimes for the bridge tests (sum, echo, slow, error, corrupt-on-load) and helpers that
publish tiny models into a registry. A bridge subprocess imports this module through
`SQLML_PLUGINS=tests.bridge.sqlml_test_fakes` (with the repository root on `PYTHONPATH`), so the fakes exist there too.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlml.bridge.manifest import Batching, Column, Manifest, Signature
from sqlml.bridge.registry import Registry
from sqlml.bridge.runtimes import register_runtime
from sqlml.bridge.runtimes.base import Runtime
from tests.call_gauge import CallGauge

CALLS: list[tuple[str, int]] = []  # (model, rows) of every predict call in this process
FIRST_INPUTS: list[tuple[str, float | None]] = []  # (model, first value of `a`) of every SumRuntime predict
_calls_lock = threading.Lock()
GAUGE = CallGauge()
MOST_AT_ONCE = GAUGE.most  # model -> the most predict or explain calls that ever ran at the same time


class SumRuntime(Runtime):
    name = "fake_sum"

    def load(self) -> None:
        self.loaded_at = time.time()

    def predict(self, batch: pa.Table) -> pa.Table:
        with _calls_lock:
            FIRST_INPUTS.append((self.manifest.name, batch.column("a")[0].as_py() if batch.num_rows else None))
        with self._counted(batch):
            return self._predict(batch)

    @contextmanager
    def _counted(self, batch: pa.Table) -> Iterator[None]:
        """Record the call in CALLS and how many calls of this model ran at once (MOST_AT_ONCE)."""
        with _calls_lock:
            CALLS.append((self.manifest.name, batch.num_rows))
        with GAUGE.inside(self.manifest.name):
            yield

    def _predict(self, batch: pa.Table) -> pa.Table:
        if self.manifest.params.get("fail_on_negative") and (pc.min(batch.column("a")).as_py() or 0) < 0:
            raise ValueError("negative input")
        params = self.manifest.params  # sleep_s per call, plus sleep_per_row_s per row: a slow model
        delay = float(params.get("sleep_s", 0.0)) + float(params.get("sleep_per_row_s", 0.0)) * batch.num_rows
        if delay:
            time.sleep(delay)
        total = pc.add(batch.column("a"), batch.column("b"))
        offset = float(self.manifest.params.get("offset", 0.0))
        return pa.table({"total": pc.add(total, offset)})

    def explain(self, batch: pa.Table, top_k: int) -> pa.Table:
        with self._counted(batch):
            time.sleep(float(self.manifest.params.get("explain_sleep_s", 0.0)))
            return self._explain(batch, top_k)

    def _explain(self, batch: pa.Table, top_k: int) -> pa.Table:
        rows = []
        for a, b in zip(batch.column("a").to_pylist(), batch.column("b").to_pylist(), strict=True):
            items = sorted([("a", a, a), ("b", b, b)], key=lambda t: -abs(t[2]))[:top_k]
            rows.append([{"feature": f, "value": v, "contribution": c} for f, v, c in items])
        return pa.table({"contributions": rows, "bias": [0.0] * len(rows), "margin": pc.add(batch["a"], batch["b"])})

    def forecast(self, series: list[str] | None, horizon: int, quantiles: list[str]) -> pa.Table:
        names = series or ["s1"]
        out: dict[str, list[Any]] = {"series": [], "ts": [], "quantile": [], "value": []}
        start = np.datetime64("2024-01-01T00:00:00", "us")
        for s in names:
            for step in range(horizon):
                for q in quantiles:
                    out["series"].append(s)
                    out["ts"].append(start + np.timedelta64(step, "h"))
                    out["quantile"].append(q)
                    out["value"].append(float(step))
        return pa.table(
            {
                "series": pa.array(out["series"], pa.string()),
                "ts": pa.array(out["ts"], pa.timestamp("us")),
                "quantile": pa.array(out["quantile"], pa.string()),
                "value": pa.array(out["value"], pa.float64()),
            }
        )

    def memory_bytes(self) -> int:
        return int(self.manifest.params.get("nbytes", 1000))


class EchoRuntime(Runtime):
    name = "fake_echo"

    def load(self) -> None:
        pass

    def predict(self, batch: pa.Table) -> pa.Table:
        with _calls_lock:
            CALLS.append((self.manifest.name, batch.num_rows))
        return pa.table({"echo": batch.column("text")})


class ErrorRuntime(SumRuntime):
    name = "fake_error"

    def predict(self, batch: pa.Table) -> pa.Table:
        raise ValueError("the fake model always fails")


class CorruptRuntime(SumRuntime):
    name = "fake_corrupt"

    def load(self) -> None:
        raise OSError("artifact checksum mismatch: model.bin is truncated")


for _cls in (SumRuntime, EchoRuntime, ErrorRuntime, CorruptRuntime):
    register_runtime(_cls.name, f"{__name__}:{_cls.__name__}")


SUM_SIGNATURE = Signature(
    inputs=[Column(name="a", type="double"), Column(name="b", type="double")],
    outputs=[Column(name="total", type="double")],
)
ECHO_SIGNATURE = Signature(inputs=[Column(name="text", type="text")], outputs=[Column(name="echo", type="text")])


def publish(
    registry: Registry,
    name: str,
    runtime: str = "fake_sum",
    *,
    signature: Signature | None = None,
    params: dict[str, Any] | None = None,
    batching: Batching | None = None,
    alias: str | None = None,
    task: str = "regression",
) -> Manifest:
    manifest = Manifest(
        name=name,
        runtime=runtime,
        task=task,  # type: ignore[arg-type]
        signature=signature or (ECHO_SIGNATURE if runtime == "fake_echo" else SUM_SIGNATURE),
        params=params or {},
        batching=batching or Batching(),
    )
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model.bin").write_bytes(b"fake")
        return registry.publish(manifest, tmp, alias=alias)


def publish_xgboost(
    registry: Registry,
    name: str,
    *,
    features: int = 4,
    trees: int = 5,
    seed: int = 0,
    batching: Batching | None = None,
    alias: str | None = None,
    corrupt: bool = False,
) -> Manifest:
    """A real tiny XGBoost classifier on synthetic data (the "xgboost" runtime), or a corrupt one."""
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, features)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "seed": seed},
        xgb.DMatrix(x, label=y),
        num_boost_round=trees,
    )
    manifest = Manifest(
        name=name,
        runtime="xgboost",
        task="classification",
        signature=Signature(
            inputs=[Column(name=f"f{i}", type="double") for i in range(features)],
            outputs=[Column(name="probability", type="double")],
        ),
        batching=batching or Batching(),
    )
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "model.json"
        if corrupt:
            target.write_bytes(b'{"learner": {"truncated')
        else:
            booster.save_model(str(target))
        return registry.publish(manifest, tmp, alias=alias)
