"""The one error tree of sqlml.

Every failure a user can see is a `SqlmlError` with a stable `code`, an HTTP `status`, a message a
person can act on, an optional `hint` (close names, the expected columns) and structured `detail`.
The bridge serialises errors with `to_dict()`; clients rebuild them with `from_dict()`; the
PostgreSQL extension maps the same codes to SQLSTATEs.

`to_dict()` bounds what goes on the wire: an error that quotes a caller's 10 MB value must not
answer with 10 MB, and `library_error_text` keeps native stack frames and install paths of a
failing library out of the messages that wrap it.
"""

from __future__ import annotations

import difflib
import errno
import json
import re
from collections.abc import Iterable
from typing import Any, ClassVar

MAX_TEXT_CHARS = 1000  # of `message` and `hint`
MAX_DETAIL_BYTES = 4096  # of `detail`, serialised as JSON
ELLIPSIS = "…"


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
        """The wire format: `{"code", "message", "hint", "detail"}`, each part bounded in size."""
        return {
            "code": self.code,
            "message": bounded_text(self.message),
            "hint": None if self.hint is None else bounded_text(self.hint),
            "detail": bounded_detail(self.detail),
        }

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


STORE_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
STORE_READ_ONLY = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


class StoreCorrupt(ModelLoadError):
    """A store file that exists but cannot be read or parsed: that model (or version) only fails."""

    code = "store_corrupt"

    def __init__(self, name: str, file: str, problem: str, *, version: int | None = None, hint: str):
        what = "alias file" if version is None else f"manifest of version {version}"
        super().__init__(
            f'{what} of model "{name}" {problem} ({file})',
            hint=hint,
            detail={"fault": "store_corrupt", "model": name, "version": version, "file": file},
        )


class StoreUnwritable(Unavailable):
    """The store refused a write: it is full, read-only or failing; nothing half-written is left."""

    code = "store_unwritable"
    status = 507

    def __init__(self, what: str, file: str, error: OSError):
        code = errno.errorcode.get(error.errno or 0, "unknown")
        if error.errno in STORE_FULL:
            message, hint = f"the model store is full: {what} was not written", "free space in the store"
        elif error.errno in STORE_READ_ONLY:
            message = f"the model store is read-only: {what} was not written"
            hint = "publish and move aliases through a bridge that mounts the store read-write"
        else:
            message, hint = f"the model store failed to write {what}: {error.strerror or error}", None
        super().__init__(message, hint=hint, detail={"fault": "store_unwritable", "errno": code, "file": file})


class BridgeTimeout(SqlmlError):
    code = "timeout"
    status = 504


class TrainingError(SqlmlError):
    code = "training_failed"
    status = 500


# -- bounded, clean text -----------------------------------------------------------------------


def bounded_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` cut to `limit` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


# Ever smaller (longest string, longest list) until the detail fits; most details fit untouched.
_DETAIL_CUTS = ((200, 20), (40, 5))


def bounded_detail(detail: dict[str, Any], limit: int = MAX_DETAIL_BYTES) -> dict[str, Any]:
    """`detail` as is when its JSON fits in `limit` bytes, else with long strings and lists cut."""
    if _json_size(detail, limit) <= limit:
        return detail
    for text_limit, list_limit in _DETAIL_CUTS:
        shrunk = _shrink(detail, text_limit, list_limit)
        if _json_size(shrunk, limit) <= limit:
            return shrunk  # type: ignore[no-any-return]
    return {"truncated": True}


def _json_size(value: Any, budget: int) -> int:
    """The size of `value` as ASCII JSON (never less than its UTF-8 size), or any number above
    `budget`: counting stops there, so a detail holding 10 MB costs no more than a small one."""
    if isinstance(value, str):
        return len(value) + 2 if len(value) > budget else len(json.dumps(value))
    if isinstance(value, dict | list | tuple):
        pairs = value.items() if isinstance(value, dict) else ((None, item) for item in value)
        total = 2  # the brackets
        for key, item in pairs:
            total += 1 + (0 if key is None else _json_size(str(key), budget) + 1)  # comma, key and colon
            total += _json_size(item, budget - total)
            if total > budget:
                break
        return total
    return len(json.dumps(value, default=str))


def _shrink(value: Any, text_limit: int, list_limit: int) -> Any:
    if isinstance(value, str):
        return bounded_text(value, text_limit)
    if isinstance(value, dict):
        items = list(value.items())
        shrunk = {bounded_text(str(k), text_limit): _shrink(v, text_limit, list_limit) for k, v in items[:list_limit]}
        if len(items) > list_limit:
            shrunk[ELLIPSIS] = f"{len(items) - list_limit} more"
        return shrunk
    if isinstance(value, list | tuple):
        kept = [_shrink(v, text_limit, list_limit) for v in value[:list_limit]]
        return [*kept, f"{ELLIPSIS} {len(value) - list_limit} more"] if len(value) > list_limit else kept
    return value


# Native libraries (XGBoost's dmlc, for one) append "Stack trace:" and "[bt] (0) /path/lib.so(...)" frames.
_NATIVE_TRACE = re.compile(r"\s*Stack trace:.*", re.DOTALL)
_NATIVE_FRAME = re.compile(r"^[ \t]*\[bt\].*(?:\n|\Z)", re.MULTILINE)
# An absolute path of two or more parts, not inside a URL or a ratio: `/usr/lib/x/core.py` -> `…/core.py`.
_PATH_PART = r"[^\s/:'\"()\[\]<>,;]+"
_ABSOLUTE_PATH = re.compile(rf"(?<![\w.~/:-])(?:/{_PATH_PART})+/({_PATH_PART})")


def library_error_text(exc: BaseException, limit: int = 300) -> str:
    """`Type: message` of an exception a library raised, without native stack frames or the
    file-system paths of the install and the store (callers need the reason, not the layout)."""
    text = _NATIVE_TRACE.sub("", str(exc))
    text = _NATIVE_FRAME.sub("", text)
    text = _ABSOLUTE_PATH.sub(ELLIPSIS + r"/\1", text).strip()
    name = type(exc).__name__
    return bounded_text(f"{name}: {text}" if text else name, limit)


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
