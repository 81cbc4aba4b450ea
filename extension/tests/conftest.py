"""Fixtures for the helper module's unit tests: the module itself, a fake `plpy`, a stub bridge."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from stub_bridge import StubBehaviour, stub_bridge  # noqa: E402


def _load_helper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sqlml_pg", HERE.parent / "sqlml_pg.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["sqlml_pg"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def helper() -> Iterator[ModuleType]:
    module = _load_helper()
    yield module
    for conn in module._connections.values():
        conn.close()
    module._connections.clear()


class PlpyError(Exception):
    pass


class SPIError(PlpyError):
    pass


class FakePlpy:
    """The parts of PL/Python's `plpy` the helper uses; settings come from a dict."""

    Error = PlpyError
    SPIError = SPIError

    def __init__(self, settings: dict[str, Any] | None = None, token: str | None = None):
        self.settings = {"bridge_url": None, "timeout_ms": None, "batch_size": None, "on_error": None,
                         "sentiment_model": None, **(settings or {})}  # fmt: skip
        self.token = token
        self.messages: list[tuple[str, str, dict[str, Any]]] = []
        self.executed: list[str] = []

    def prepare(self, sql: str, types: list[str] | None = None) -> str:
        return sql

    def execute(self, plan: str, args: list[Any] | None = None) -> list[dict[str, Any]]:
        self.executed.append(plan)
        if "current_setting" in plan:
            return [dict(self.settings)]
        if "bridge_tokens" in plan:
            return [{"token": self.token}] if self.token else []
        return []

    def quote_ident(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def quote_literal(self, text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    def warning(self, message: str, **fields: Any) -> None:
        self.messages.append(("warning", message, fields))

    def notice(self, message: str, **fields: Any) -> None:
        self.messages.append(("notice", message, fields))

    def error(self, message: str, **fields: Any) -> None:
        raise PlpyError(message)


@pytest.fixture
def bridge() -> Iterator[tuple[str, StubBehaviour]]:
    with stub_bridge() as running:
        yield running


@pytest.fixture
def plpy(bridge: tuple[str, StubBehaviour]) -> FakePlpy:
    return FakePlpy({"bridge_url": bridge[0], "timeout_ms": "2000"})
