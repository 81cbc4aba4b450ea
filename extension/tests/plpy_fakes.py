"""A fake of the parts of PL/Python's `plpy` module that the helper module uses."""

from __future__ import annotations

from typing import Any


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
            return [{"login": "tester", **self.settings}]
        if "bridge_tokens" in plan:
            # the default token, bound to the session's URL (or the default one)
            url = (self.settings.get("bridge_url") or "http://127.0.0.1:8765").rstrip("/")
            return [{"token": self.token, "bridge_url": url, "depth": None, "grants": None}] if self.token else []
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
