"""Fixtures for the tabular tests: tiny real XGBoost lead-scoring and forecast models.

Both are trained by the real trainers on small synthetic frames (a few trees, a few thousand
rows), published into a temporary registry and served through a real `ModelHost`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sqlml.bridge.host import ModelHost
from sqlml.bridge.manifest import Manifest
from sqlml.bridge.registry import Registry
from sqlml.bridge.training.forecast import train_forecast
from sqlml.bridge.training.leads import train_leads
from sqlml.data.power import SERIES

LEAD_FEATURES = ["mostype", "maanthui", "mgemomv", "mgemleef", "moshoofd", "ppersaut"]
HOURS = 1_700
TEST_GRID = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


@pytest.fixture(scope="session")
def lead_frame() -> pd.DataFrame:
    """600 fake customers: small integer features, purchase driven by two of them."""
    rng = np.random.default_rng(3)
    rows = 600
    frame = pd.DataFrame({"lead_id": np.arange(1, rows + 1, dtype=np.int64)})
    for position, name in enumerate(LEAD_FEATURES):
        frame[name] = rng.integers(0, 10 if position % 2 else 5, size=rows).astype(np.int64)
    logit = -2.0 + 0.5 * frame["ppersaut"] - 0.6 * frame["mostype"] + rng.normal(0, 0.5, rows)
    frame["purchased"] = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    return frame


@pytest.fixture(scope="session")
def power_frame() -> pd.DataFrame:
    """Five non-negative hourly series with daily and weekly cycles, in the loader's long format."""
    rng = np.random.default_rng(5)
    ts = pd.date_range("2010-01-04", periods=HOURS, freq="h").astype("datetime64[us]")
    hour = np.arange(HOURS)
    parts = []
    for code, name in enumerate(SERIES):
        level = 0.3 + 0.2 * code
        values = level * (1.2 + np.sin(2 * np.pi * hour / 24) + 0.3 * np.sin(2 * np.pi * hour / 168))
        values = np.maximum(values + rng.normal(0, 0.1 * level, HOURS), 0.0)
        parts.append(pd.DataFrame({"ts": ts, "series": name, "value": values}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return Registry(tmp_path_factory.mktemp("tabular-store") / "models")


@pytest.fixture(scope="session")
def lead_manifest(registry: Registry, lead_frame: pd.DataFrame) -> Manifest:
    return train_leads(registry, progress=False, data=lead_frame, n_estimators=8, max_depth=3, cv_folds=2)


@pytest.fixture(scope="session")
def forecast_manifest(registry: Registry, power_frame: pd.DataFrame) -> Manifest:
    return train_forecast(
        registry,
        progress=False,
        data=power_frame,
        quantile_grid=TEST_GRID,
        n_estimators=6,
        max_depth=3,
    )


@pytest.fixture()
def host(registry: Registry, lead_manifest: Manifest, forecast_manifest: Manifest) -> ModelHost:
    return ModelHost(registry)
