"""Fixtures for the sentiment tests: a tiny random BERT with the packaged MiniLM tokenizer.

Everything is built locally in seconds: no hub, no full-size training. The SQLML home (and with
it the reviews cache) lives in a temporary folder for the whole session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sqlml.bridge.manifest import Manifest
from sqlml.bridge.registry import Registry
from sqlml.bridge.training.sentiment import sentiment_signature, train_sentiment
from tests.tiny_models import random_bert


@pytest.fixture(scope="session", autouse=True)
def sqlml_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("sqlml-home")
    previous = {key: os.environ.get(key) for key in ("SQLML_HOME", "SQLML_STORE")}
    os.environ["SQLML_HOME"] = str(home)
    os.environ.pop("SQLML_STORE", None)
    yield home
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer, 32-wide BERT classifier saved with the real MiniLM tokenizer."""
    return random_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return Registry(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session")
def trained(registry: Registry, tiny_base: Path) -> Manifest:
    """The tiny BERT fine-tuned by the real trainer on 80 train / 80 test reviews."""
    return train_sentiment(
        registry, base_model=tiny_base, limit=80, epochs=1, batch_size=16, progress=False, max_length=64
    )


def sentiment_manifest(name: str, params: dict[str, Any]) -> Manifest:
    return Manifest(name=name, runtime="sentiment", task="sentiment", signature=sentiment_signature(), params=params)


@pytest.fixture(scope="session")
def fixed_calibration(registry: Registry, tiny_base: Path) -> Manifest:
    """The untrained tiny BERT published as-is, with a steep calibration that spreads its
    probabilities (all near 0.5 untrained) so that every label is reachable."""
    params = {"calibration": {"encoder_weight": 40.0, "bias": 0.0}, "max_length": 128}
    return registry.publish(sentiment_manifest("sentiment_fixed", params), tiny_base, alias="production")
