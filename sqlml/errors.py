"""The one error tree of sqlml.

Every failure a user can see is a `SqlmlError` with a stable `code`, an HTTP `status`, a message a
person can act on, an optional `hint` (close names, the expected columns) and structured `detail`.
The bridge serialises errors with `to_dict()`; clients rebuild them with `from_dict()`; the
PostgreSQL extension maps the same codes to SQLSTATEs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, ClassVar


class SqlmlError(Exception):
    """Root of every error sqlml raises on purpose."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, hint: str | None = None, detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail: dict[str, Any] = dict(detail or {})

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"

    def to_dict(self) -> dict[str, Any]:
        """The wire format: `{"code", "message", "hint", "detail"}`."""
        return {"code": self.code, "message": self.message, "hint": self.hint, "detail": self.detail}

    @staticmethod
    def from_dict(payload: dict[str, Any], status: int | None = None) -> SqlmlError:
        """Rebuild an error received from the bridge, keeping its code."""
        code = str(payload.get("code", "internal_error"))
        cls = ERRORS_BY_CODE.get(code, SqlmlError)
        error = SqlmlError.__new__(cls)
        SqlmlError.__init__(
            error,
            str(payload.get("message", "unknown error")),
            hint=payload.get("hint"),
            detail=payload.get("detail") or {},
        )
        return error


# --- 4xx: the caller can fix it -------------------------------------------------------------


class BadRequest(SqlmlError):
    code = "bad_request"
    status = 400


class InvalidName(BadRequest):
    code = "invalid_name"


class InvalidInput(BadRequest):
    """A batch that does not match the model's signature (missing, extra or mistyped columns)."""

    code = "invalid_input"
    status = 422


class Unauthorized(SqlmlError):
    code = "unauthorized"
    status = 401


class Forbidden(SqlmlError):
    code = "forbidden"
    status = 403


class NotFound(SqlmlError):
    code = "not_found"
    status = 404


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, name: str, known: Iterable[str] = ()):
        close = close_names(name, known)
        hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else None
        super().__init__(f'model "{name}" not found', hint=hint, detail={"model": name, "candidates": close})


class VersionNotFound(NotFound):
    code = "version_not_found"

    def __init__(self, name: str, ref: str, known: Iterable[str] = ()):
        known = list(known)
        hint = f"known versions and aliases: {', '.join(known)}" if known else None
        super().__init__(
            f'model "{name}" has no version or alias "{ref}"', hint=hint, detail={"model": name, "ref": ref}
        )


class Conflict(SqlmlError):
    code = "conflict"
    status = 409


class PayloadTooLarge(BadRequest):
    code = "payload_too_large"
    status = 413


class NotSupported(BadRequest):
    """The model's runtime does not offer this operation (for example `explain` on sentiment)."""

    code = "not_supported"


# --- 5xx: the service or the model failed ---------------------------------------------------


class ModelLoadError(SqlmlError):
    code = "model_load_failed"
    status = 503


class Unavailable(SqlmlError):
    code = "unavailable"
    status = 503


class BridgeTimeout(SqlmlError):
    code = "timeout"
    status = 504


class TrainingError(SqlmlError):
    code = "training_failed"
    status = 500


def close_names(name: str, known: Iterable[str], limit: int = 3) -> list[str]:
    """Known names close to `name`, best first (for hints)."""
    return difflib.get_close_matches(name, list(known), n=limit, cutoff=0.5)


def _all_subclasses(cls: type[SqlmlError]) -> list[type[SqlmlError]]:
    out: list[type[SqlmlError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


_ALL_ERRORS: list[type[SqlmlError]] = [SqlmlError, *_all_subclasses(SqlmlError)]
ERRORS_BY_CODE: dict[str, type[SqlmlError]] = {cls.code: cls for cls in _ALL_ERRORS}
