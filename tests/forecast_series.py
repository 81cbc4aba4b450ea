"""A generated daily sales series driven by a covariate, and tiny forecast models trained on it.

`value = base + weekly cycle + 5 * promo + noise`: a model that knows `promo` at each forecast
step can forecast the jumps, one without it cannot. The forecast tests of the runtime, the bridge,
PostgreSQL and DuckDB train on it with the real trainer (a few trees, a couple of seconds).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sqlml.bridge.manifest import Manifest
from sqlml.bridge.registry import Registry
from sqlml.bridge.training.forecast import train_forecast

DAYS = 420
TRAINED_DAYS = 330  # day D: the models see days 0 .. D-1
GRID = (0.01, 0.1, 0.5, 0.9, 0.99)
FAST: dict[str, Any] = {"n_estimators": 20, "max_depth": 3, "quantile_grid": GRID}


def promo_frame(days: int = DAYS, seed: int = 0) -> pd.DataFrame:
    """One series "shop": ts (daily), series, value, promo (boolean, on about 30 % of the days)."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2023-01-02", periods=days, freq="D").astype("datetime64[us]")
    promo = rng.random(days) < 0.3
    value = 20.0 + 3.0 * np.sin(2 * np.pi * np.arange(days) / 7) + 5.0 * promo + rng.normal(0, 0.5, days)
    return pd.DataFrame({"ts": ts, "series": "shop", "value": value, "promo": promo})


def train_promo_models(registry: Registry, frame: pd.DataFrame, prefix: str) -> tuple[Manifest, Manifest]:
    """`<prefix>_promo` (with the covariate) and `<prefix>_plain` (without), both on the first D days."""
    seen = frame.iloc[:TRAINED_DAYS]
    with_promo = train_forecast(
        registry, progress=False, data=seen, name=f"{prefix}_promo", covariates=["promo"], **FAST
    )
    plain = train_forecast(
        registry, progress=False, data=seen[["ts", "series", "value"]], name=f"{prefix}_plain", **FAST
    )
    return with_promo, plain


def mae(predicted: object, actual: object) -> float:
    return float(np.mean(np.abs(np.asarray(predicted, dtype=float) - np.asarray(actual, dtype=float))))
