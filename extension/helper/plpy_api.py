"""What the helper uses of PL/Python's `plpy` object, as a Protocol, and the plans it prepares.

PL/Python hands every function the module `plpy`; the tests hand it a fake
(extension/tests/plpy_fakes.py). Typing it lets mypy check the helper's every use of it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol


class PlpyPlan(Protocol):
    """A prepared statement (`plpy.prepare`): opaque, only ever handed back to `plpy.execute`."""


class PlpyResult(Protocol):
    """The rows of `plpy.execute` or of a cursor's `fetch`: each a dict of column: value."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> dict[str, Any]: ...

    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def colnames(self) -> list[str]: ...

    def coltypes(self) -> list[int]: ...


class PlpyCursor(Protocol):
    """A server-side cursor (`plpy.cursor`), read a chunk at a time."""

    def fetch(self, count: int, /) -> PlpyResult: ...


class Plpy(Protocol):
    """The parts of `plpy` the helper calls."""

    # The base class of the errors PL/Python turns into SQL errors, and the one it raises when a
    # statement run through SPI fails (a cancel, a permission, the caller's query).
    Error: type[Exception]
    SPIError: type[Exception]

    def execute(self, statement: str | PlpyPlan, arguments: Sequence[Any] | None = None, /) -> PlpyResult: ...

    def prepare(self, sql: str, types: Sequence[str] | None = None, /) -> PlpyPlan: ...

    def cursor(self, query: str, /) -> PlpyCursor: ...

    def subtransaction(self) -> AbstractContextManager[object]: ...

    def quote_ident(self, name: str, /) -> str: ...

    def quote_literal(self, text: str, /) -> str: ...

    def notice(self, message: str, /, **fields: str) -> None: ...

    def warning(self, message: str, /, **fields: str) -> None: ...


_plans: dict[str, PlpyPlan] = {}


def prepared(plpy: Plpy, sql: str, types: Sequence[str] = ()) -> PlpyPlan:
    """The plan of `sql` (with these argument types), prepared once per session."""
    key = sql + "|" + ",".join(types) if types else sql
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = plpy.prepare(sql, list(types)) if types else plpy.prepare(sql)
    return plan
