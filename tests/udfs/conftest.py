"""Fixtures for the DuckDB tests: a tmp store of fake models and a connection with `ml` installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from sqlml.bridge.client import LocalClient
from sqlml.bridge.registry import Registry
from sqlml.udfs import register
from tests.udfs.fakes import publish_fakes


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "store")
    publish_fakes(registry, tmp_path)
    return registry


@pytest.fixture
def client(registry: Registry) -> LocalClient:
    return LocalClient(registry)


@pytest.fixture
def con(client: LocalClient) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    register(connection, client)
    yield connection
    connection.close()
