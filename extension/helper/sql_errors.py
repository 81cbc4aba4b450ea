"""One error inside the helper, `BridgeError`, and how it reaches the SQL client.

A failure carries a bridge error code (sqlml/errors.py's codes, mapped to SQLSTATEs by
sqlml/sql/sqlstates.py), a message, a HINT and a DETAIL. `raise_sql` raises it as the SQL error
PL/Python reports; in `sqlml.on_error = 'null'` mode `Warnings` reports it as a WARNING instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from sqlml.sql.sqlstates import SQLSTATES

from .plpy_api import Plpy

MAX_WARNINGS_PER_CALL = 5


class BridgeError(Exception):
    """A failure with a bridge error code; becomes a SQL error (or a WARNING in 'null' mode)."""

    def __init__(self, code: str, message: str, hint: str | None = None, detail: Any = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.detail = detail
        self.sqlstate_override: str | None = None

    @property
    def sqlstate(self) -> str:
        return self.sqlstate_override or SQLSTATES.get(self.code, "XX000")

    def detail_text(self) -> str | None:
        if self.detail in (None, {}, ""):
            return None
        if isinstance(self.detail, str):
            return self.detail
        return json.dumps(self.detail, default=str)[:2000]

    def fields(self) -> dict[str, str]:
        """The SQLSTATE, and the HINT and DETAIL when they are set (None would print as "None")."""
        fields = {"sqlstate": self.sqlstate}
        if self.hint:
            fields["hint"] = self.hint
        detail = self.detail_text()
        if detail:
            fields["detail"] = detail
        return fields


_error_classes: dict[int, type[Exception]] = {}


def _sql_error_class(plpy: Plpy) -> type[Exception]:
    """A plpy.Error subclass that PL/Python reports as "sqlml: <message>".

    PL/Python prefixes the message with the exception's module and type ("plpy.Error: ..."),
    except for the module "builtins"; it reads sqlstate, detail and hint from the instance."""
    cls = _error_classes.get(id(plpy.Error))
    if cls is None:
        cls = _error_classes[id(plpy.Error)] = type("sqlml", (plpy.Error,), {"__module__": "builtins"})
    return cls


def raise_sql(plpy: Plpy, error: BridgeError) -> NoReturn:
    exception = _sql_error_class(plpy)(error.message)
    for name, value in error.fields().items():
        setattr(exception, name, value)
    raise exception


def from_spi_error(exc: Exception) -> BridgeError:
    """A BridgeError carrying an SPI error (from a nested ml._predict_rows or the caller's query)."""
    message = str(exc.args[0] if exc.args else exc)
    message = message[len("sqlml: ") :] if message.startswith("sqlml: ") else message
    # PL/Python keeps an SPI error's fields in `spidata`: (sqlstate, detail, hint, query, position, ...)
    spidata: Sequence[Any] = getattr(exc, "spidata", None) or ()
    detail = spidata[1] if len(spidata) > 1 else None
    hint = spidata[2] if len(spidata) > 2 else None
    error = BridgeError("internal_error", message, hint, detail)
    error.sqlstate_override = getattr(exc, "sqlstate", None)
    return error


@contextmanager
def spi_errors_reported(plpy: Plpy) -> Iterator[None]:
    """An SPI error inside (the caller's query, a nested ml.* call) raised again as a BridgeError,
    so that the SQL function reports it with its own SQLSTATE, message, DETAIL and HINT."""
    try:
        yield
    except plpy.SPIError as exc:
        raise from_spi_error(exc) from None


class Warnings:
    """At most a few WARNINGs per call, then one summary, so a bad column cannot flood the client."""

    def __init__(self, plpy: Plpy):
        self.plpy = plpy
        self.count = 0

    def warn(self, error: BridgeError, rows: int) -> None:
        self.count += 1
        if self.count <= MAX_WARNINGS_PER_CALL:
            suffix = f" ({rows} row{'s' if rows != 1 else ''} set to NULL)"
            self.plpy.warning(error.message + suffix, **error.fields())

    def finish(self) -> None:
        if self.count > MAX_WARNINGS_PER_CALL:
            self.plpy.warning(f"sqlml: {self.count - MAX_WARNINGS_PER_CALL} more scoring failures not shown")
