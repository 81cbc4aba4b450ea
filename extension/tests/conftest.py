"""Fixtures for the helper module's unit tests: the module itself, a fake `plpy`, a stub bridge."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from built_helper import built_helper  # noqa: E402
from plpy_fakes import FakePlpy  # noqa: E402
from stub_bridge import StubBehaviour, stub_bridge  # noqa: E402


def _load_helper() -> ModuleType:
    """The helper exactly as the extension ships it: built from its modules, run as one file."""
    return built_helper("sqlml_pg")


@pytest.fixture
def helper() -> Iterator[ModuleType]:
    module = _load_helper()
    yield module
    for conn in module._connections.values():
        conn.close()
    module._connections.clear()


@pytest.fixture
def bridge() -> Iterator[tuple[str, StubBehaviour]]:
    with stub_bridge() as running:
        yield running


@pytest.fixture
def plpy(bridge: tuple[str, StubBehaviour]) -> FakePlpy:
    return FakePlpy({"bridge_url": bridge[0], "timeout_ms": "2000"})
