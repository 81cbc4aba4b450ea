"""The bridge's HTTP client: JSON over one kept-alive connection per bridge URL.

Requests wait in short slices so that PostgreSQL can cancel the statement meanwhile; every failure
(unreachable, timeout, an error body, a malformed answer) is a `BridgeError` with the bridge's code
and a HINT in SQL terms.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from .settings import Settings
from .sql_errors import BridgeError

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "invalid_input",
    503: "unavailable",
    504: "timeout",
}
INTERRUPT_CHECK_SECONDS = 0.25


class _NoDelayHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        # Without it a kept-alive request can stall ~44 ms (Nagle plus delayed ACK).
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _NoDelayHTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


_connections: dict[str, http.client.HTTPConnection] = {}


class Bridge:
    """JSON over one kept-alive connection per bridge URL (kept for the whole session)."""

    def __init__(self, settings: Settings, check_interrupts: Callable[[], None] | None = None):
        self.settings = settings
        parsed = urllib.parse.urlsplit(settings.bridge_url)
        self.scheme = parsed.scheme
        self.netloc = parsed.netloc
        self.base_path = parsed.path.rstrip("/")
        self.timeout_s = settings.timeout_ms / 1000.0
        # Called every INTERRUPT_CHECK_SECONDS while waiting on the bridge: it raises when the
        # statement was cancelled (pg_cancel_backend, statement_timeout), which PL/Python would
        # otherwise only notice once the socket gave up.
        self.check_interrupts = check_interrupts or (lambda: None)

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        key = f"{self.scheme}://{self.netloc}"
        conn = _connections.get(key)
        if conn is not None:
            return conn, True
        cls = _NoDelayHTTPSConnection if self.scheme == "https" else _NoDelayHTTPConnection
        conn = _connections[key] = cls(self.netloc, timeout=self.timeout_s)
        return conn, False

    def _drop(self) -> None:
        conn = _connections.pop(f"{self.scheme}://{self.netloc}", None)
        if conn is not None:
            conn.close()

    def call(self, method: str, path: str, payload: Any = None, idempotent: bool = True) -> Any:
        """Send one request; return the decoded JSON body or raise `BridgeError`.

        A kept-alive connection the bridge closed (a restart, an idle timeout) is retried once on a
        new one; a request that must not run twice (`idempotent=False`: a job, an upload's rows, a
        rollback) goes on a new connection from the start, so it is never retried."""
        if not idempotent:
            self._drop()
        if payload is None:
            body = None
        elif isinstance(payload, (bytes, str)):
            body = payload.encode() if isinstance(payload, str) else payload
        else:
            body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.settings.token:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        url = self.settings.bridge_url
        started = time.monotonic()
        deadline = started + self.timeout_s
        for attempt in (1, 2):
            conn, reused = self._connection()
            try:
                self._connect(conn, deadline)
                conn.request(method, self.base_path + path, body=body, headers=headers)
                self._await_answer(conn, deadline)
                response = conn.getresponse()
                data = response.read()
            except TimeoutError:
                self._drop()
                raise BridgeError(
                    "timeout",
                    f"the bridge at {url} did not answer within {self.settings.timeout_ms} ms",
                    hint="raise sqlml.timeout_ms (SET sqlml.timeout_ms = 120000) or check the bridge's load",
                    detail={"elapsed_ms": round((time.monotonic() - started) * 1000)},
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                if reused and attempt == 1:
                    continue  # a kept-alive connection the bridge closed (restart, idle timeout): retry once
                raise BridgeError(
                    "bridge_unreachable",
                    f"cannot reach the bridge at {url}: {exc.__class__.__name__}: {exc}",
                    hint="check that the bridge is running and that sqlml.bridge_url points at it",
                ) from None
            except (ValueError, UnicodeError):
                self._drop()  # http.client refusing a header: its message would quote the token
                raise BridgeError(
                    "invalid_setting",
                    "the request to the bridge could not be built (a stored token or setting holds a character"
                    " HTTP does not allow)",
                    hint="the extension owner stores the token again: SELECT ml.set_token('<token>')",
                ) from None
            except BaseException:
                self._drop()  # cancelled while waiting: an answer, if one comes, is for nobody
                raise
            if response.will_close:
                self._drop()
            try:
                return _decode(url, response.status, data)
            except BridgeError as error:
                if error.code in ("unauthorized", "forbidden"):
                    error.hint = self._auth_hint(error.code)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect(self, conn: http.client.HTTPConnection, deadline: float) -> None:
        """Connect in slices, checking for a cancel between them; then the socket waits until the
        deadline (reads are sliced by _await_answer)."""
        while conn.sock is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            conn.timeout = min(remaining, INTERRUPT_CHECK_SECONDS * 4)
            try:
                conn.connect()
            except TimeoutError:
                conn.close()
                self.check_interrupts()
        conn.sock.settimeout(max(deadline - time.monotonic(), 0.001))

    def _await_answer(self, conn: http.client.HTTPConnection, deadline: float) -> None:
        """Block until the bridge starts answering, waking every INTERRUPT_CHECK_SECONDS to let
        PostgreSQL cancel the statement; TimeoutError past the deadline."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            readable, _, _ = select.select([conn.sock], [], [], min(remaining, INTERRUPT_CHECK_SECONDS))
            if readable:
                conn.sock.settimeout(max(deadline - time.monotonic(), 0.001))
                return
            self.check_interrupts()

    def _auth_hint(self, code: str) -> str:
        """What to do about a 401 or 403, in SQL terms."""
        settings = self.settings
        if code == "forbidden":
            return (
                "the bridge token this role uses lacks that scope: an sqlml_admin grants a model with "
                "SELECT ml.grant('<model>', '<role>'), the extension owner stores another token with "
                "SELECT ml.set_token('<token>', '<role>')"
            )
        if settings.withheld_for:
            return (
                f"the stored bridge token is only sent to {settings.withheld_for}, and this session's "
                f"sqlml.bridge_url is {settings.bridge_url}: RESET sqlml.bridge_url, or the extension owner "
                f"stores a token for this URL with SELECT ml.set_token('<token>', NULL, '{settings.bridge_url}')"
            )
        if settings.token:
            return (
                "the bridge refused the stored token: the extension owner stores a valid one with "
                "SELECT ml.set_token('<token>')"
            )
        return "no bridge token is stored for this role: the extension owner runs SELECT ml.set_token('<token>')"

    def predict(self, model: str, rows_json: Sequence[str]) -> list[dict[str, Any] | None]:
        """Score rows given as JSON object texts; one output object per row, in order."""
        return self.predict_array(model, "[" + ",".join(rows_json) + "]", len(rows_json))

    def predict_array(
        self, model: str, rows_array_json: str, expected_rows: int | None = None
    ) -> list[dict[str, Any] | None]:
        """Score a JSON array of row objects given as text, sent as is; one output per row, in
        order. A caller that does not count the rows (it never parsed them) checks the count."""
        answer = self.call("POST", f"/v1/models/{quote_model(model)}/predict", '{"rows":' + rows_array_json + "}")
        rows = answer.get("rows") if isinstance(answer, dict) else None
        if not isinstance(rows, list) or (expected_rows is not None and len(rows) != expected_rows):
            raise BridgeError(
                "bad_response",
                f'the bridge answered predict for "{model}" with a malformed body',
                detail={"expected_rows": expected_rows, "got": _shape(answer)},
            )
        return rows

    def predict_columns(self, model: str, columns: dict[str, list[Any]], count: int) -> dict[str, list[Any]]:
        answer = self.call("POST", f"/v1/models/{quote_model(model)}/predict", {"columns": columns})
        out = answer.get("columns") if isinstance(answer, dict) else None
        if not isinstance(out, dict) or any(not isinstance(v, list) or len(v) != count for v in out.values()):
            raise BridgeError(
                "bad_response",
                f'the bridge answered predict for "{model}" with a malformed body',
                detail={"expected_rows": count, "got": _shape(answer)},
            )
        return out

    def models(self) -> list[dict[str, Any]]:
        """The /v1/models entries: one per model the bridge serves."""
        answer = self.call("GET", "/v1/models")
        entries = answer.get("models") if isinstance(answer, dict) else None
        if not isinstance(entries, list):
            raise BridgeError("bad_response", "the bridge answered /v1/models with a malformed body")
        return [e for e in entries if isinstance(e, dict)]


def _decode(url: str, status: int, data: bytes) -> Any:
    try:
        decoded = json.loads(data) if data else None
    except ValueError:
        decoded = _UNDECODABLE
    if status >= 400:
        error = decoded.get("error") if isinstance(decoded, dict) else None
        if isinstance(error, dict) and error.get("message"):
            code = str(error.get("code") or STATUS_CODES.get(status, "internal_error"))
            raise BridgeError(code, str(error["message"]), error.get("hint"), error.get("detail"))
        raise BridgeError(
            STATUS_CODES.get(status, "internal_error"),
            f"the bridge at {url} answered HTTP {status}",
            detail=data[:300].decode("utf-8", "replace"),
        )
    if decoded is _UNDECODABLE:
        raise BridgeError(
            "bad_response",
            f"the bridge at {url} answered with a body that is not JSON",
            detail=data[:300].decode("utf-8", "replace"),
        )
    return decoded


_UNDECODABLE = object()


def quote_model(model: str) -> str:
    """A model reference as one URL path segment (`name:alias` keeps its colon)."""
    return urllib.parse.quote(model, safe=":")


def _shape(answer: Any) -> str:
    if isinstance(answer, dict):
        return "object with keys " + ", ".join(sorted(map(str, answer))[:10])
    return type(answer).__name__
