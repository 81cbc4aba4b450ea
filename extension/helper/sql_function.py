"""The scaffold every SQL-facing function shares, as decorators.

A function PL/Python calls as `GD["sqlml"].<name>(plpy, ...)` is written as a body that takes a
`SqlCall` in place of `plpy` and says only what it does; the decorator reads the settings, opens
the bridge, and turns a `BridgeError` into the SQL error (or, for the per-row functions in
`sqlml.on_error = 'null'` mode, into a WARNING and NULL):

- `sql_function`: a failure is a SQL error; the bridge is opened when the body first asks for it.
- `bridge_function`: the same, with the settings read and the bridge opened before the body runs.
- `bridge_function_or_null`: a per-row function; in 'null' mode a failure gives NULL and a WARNING.

A body that is a generator (a set-returning function) stays one: PL/Python iterates it lazily,
and an error raised while it iterates becomes a SQL error all the same.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from .bridge_http import Bridge
from .plpy_api import Plpy, prepared
from .settings import Settings, read_settings
from .sql_errors import BridgeError, Warnings, raise_sql

Params = ParamSpec("Params")
Returned = TypeVar("Returned")


class SqlCall:
    """One call of a SQL function: PL/Python's `plpy`, the bridge (opened with this statement's
    settings on first use), and the call's WARNINGs."""

    def __init__(self, plpy: Plpy):
        self.plpy = plpy
        self.warnings = Warnings(plpy)
        self._bridge: Bridge | None = None

    def open(self) -> Bridge:
        """The bridge, with the settings read (once per call, with the role's token)."""
        if self._bridge is None:
            _settings, self._bridge = _open(self.plpy)
        return self._bridge

    @property
    def bridge(self) -> Bridge:
        return self.open()

    @property
    def settings(self) -> Settings:
        return self.bridge.settings


def _open(plpy: Plpy, with_token: bool = True) -> tuple[Settings, Bridge]:
    """This call's settings and the bridge they name; a bad setting is a SQL error, in any
    sqlml.on_error mode. ml.job (extension/sql/training.sql) calls it too, with `Bridge.call`,
    `BridgeError` and `raise_sql`."""
    try:
        settings = read_settings(plpy, with_token)
    except BridgeError as error:
        raise_sql(plpy, error)
    return settings, Bridge(settings, lambda: check_interrupts(plpy))


def check_interrupts(plpy: Plpy) -> None:
    """Run a trivial statement: PostgreSQL's executor checks for a pending cancel or
    statement_timeout there and raises it (as plpy.SPIError, which then ends the call)."""
    plpy.execute(prepared(plpy, "SELECT 1"))


SqlBody = Callable[Concatenate[SqlCall, Params], Returned]
PlpyFunction = Callable[Concatenate[Plpy, Params], Returned]


def sql_function(body: SqlBody[Params, Returned]) -> PlpyFunction[Params, Returned]:
    """A failure is a SQL error; the bridge is opened when the body first uses `call.bridge`."""
    return _raising(body, open_first=False)


def bridge_function(body: SqlBody[Params, Returned]) -> PlpyFunction[Params, Returned]:
    """A failure is a SQL error; the settings are read and the bridge opened before the body runs."""
    return _raising(body, open_first=True)


def bridge_function_or_null(body: SqlBody[Params, Returned]) -> PlpyFunction[Params, Returned | None]:
    """A per-row function: the bridge opened first (bad settings are always an error), then a
    failure is a SQL error, or in `sqlml.on_error = 'null'` mode a WARNING and NULL."""
    if inspect.isgeneratorfunction(body):
        raise TypeError(f"{body.__name__}: a set-returning function has no NULL to return")

    def function(plpy: Plpy, /, *args: Params.args, **kwargs: Params.kwargs) -> Returned | None:
        call = SqlCall(plpy)
        call.open()
        try:
            return body(call, *args, **kwargs)
        except BridgeError as error:
            if call.settings.on_error != "null":
                raise_sql(plpy, error)
            call.warnings.warn(error, 1)
            return None

    return _called_with_plpy(function, body)


def _raising(body: SqlBody[Params, Returned], open_first: bool) -> PlpyFunction[Params, Returned]:
    if inspect.isgeneratorfunction(body):

        def rows(plpy: Plpy, /, *args: Params.args, **kwargs: Params.kwargs) -> Iterator[Any]:
            call = SqlCall(plpy)
            if open_first:
                call.open()
            try:
                yield from cast(Iterator[Any], body(call, *args, **kwargs))
            except BridgeError as error:
                raise_sql(plpy, error)
            call.warnings.finish()

        return _called_with_plpy(cast("PlpyFunction[Params, Returned]", rows), body)

    def function(plpy: Plpy, /, *args: Params.args, **kwargs: Params.kwargs) -> Returned:
        call = SqlCall(plpy)
        if open_first:
            call.open()
        try:
            result = body(call, *args, **kwargs)
        except BridgeError as error:
            raise_sql(plpy, error)
        call.warnings.finish()
        return result

    return _called_with_plpy(function, body)


def _called_with_plpy(
    function: PlpyFunction[Params, Returned], body: SqlBody[Params, Any]
) -> PlpyFunction[Params, Returned]:
    """`function` under the body's name and docstring, with its signature (`plpy` for `call`)."""
    functools.update_wrapper(function, body)
    signature = inspect.signature(body)
    call, *rest = signature.parameters.values()
    plpy = call.replace(name="plpy", kind=inspect.Parameter.POSITIONAL_ONLY, annotation="Plpy")
    function.__signature__ = signature.replace(parameters=[plpy, *rest])  # type: ignore[attr-defined]
    return function
