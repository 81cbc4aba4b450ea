"""Fixtures for the CLI tests: a private SQLML_HOME whose store holds fake models."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqlml import config
from sqlml.bridge.registry import Registry
from tests.udfs.fakes import publish_fakes


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    monkeypatch.setenv("SQLML_HOME", str(folder))
    monkeypatch.delenv("SQLML_STORE", raising=False)
    return config.home()


@pytest.fixture
def store(home: Path, tmp_path: Path) -> Registry:
    registry = Registry(config.store_url())
    publish_fakes(registry, tmp_path)
    return registry
