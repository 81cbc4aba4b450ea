"""The in-database half of the sqlml PostgreSQL extension: every PL/Python function delegates here.

PL/Python runs the server's own Python (3.11, standard library only), so this module uses nothing
but the standard library. The extension's build embeds this file in `sqlml--<version>.sql`;
`ml._load_helper()` executes it once per session into `GD["sqlml"]`, and each PL/Python body is a
one-line call into it with the `plpy` object, which keeps the module testable outside PostgreSQL
with a fake `plpy` and a stub bridge.

What it does: reads the `sqlml.*` settings, keeps one kept-alive HTTP connection per bridge (with
TCP_NODELAY: a per-row request then costs ~0.2 ms instead of ~44 ms), sends rows in batches of
`sqlml.batch_size`, and turns every failure into a SQL error with an SQLSTATE, a message and a
HINT — or, with `sqlml.on_error = 'null'`, into NULL outputs plus a WARNING, narrowing a rejected
batch down to the offending rows so that one bad row does not cost the other ten million.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import re
import select
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlml.naming import MODEL_REF, NAME, RESERVED_ALIASES
from sqlml.sql.reserved import BUILTIN_MODEL_FUNCTIONS, RESERVED_FUNCTIONS
from sqlml.sql.spec import FunctionSpec, spec_from_entry
from sqlml.sql.sqlstates import SQLSTATES

# Codes that a single bad row can cause: in on_error = 'null' mode a rejected batch is split to
# find the rows responsible. Other failures (bridge down, timeout) affect every row alike.
ROW_LEVEL_CODES = frozenset({"invalid_input", "bad_request"})

DEFAULT_BRIDGE_URL = "http://127.0.0.1:8765"
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
# Long enough for a cold model load on the documented 2-core machine (MiniLM measured 5.5-9.5 s to
# its first answer), the bridge's own request timeout (30 s), and its "still loading" answer.
DEFAULT_TIMEOUT_MS = 30_000
# The bridge's default per-request row limit (its max_request_rows): a larger sqlml.batch_size
# would only earn 413s.
MAX_BATCH_SIZE = 100_000
TOKEN_CACHE_SECONDS = 5.0
INTERRUPT_CHECK_SECONDS = 0.25
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


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    bridge_url: str
    timeout_ms: int
    batch_size: int
    on_error: str
    sentiment_model: str
    token: str | None = None
    # Set when a token is stored for this role but bound to another URL than this session's: the
    # token is then withheld, and a 401 says where it would have gone.
    withheld_for: str | None = None
    statement: str = ""  # when the client's statement started: identifies it for _once_per_statement


SETTINGS_SQL = """
SELECT pg_catalog.current_setting('sqlml.bridge_url', true) AS bridge_url,
       pg_catalog.current_setting('sqlml.timeout_ms', true) AS timeout_ms,
       pg_catalog.current_setting('sqlml.batch_size', true) AS batch_size,
       pg_catalog.current_setting('sqlml.on_error', true) AS on_error,
       pg_catalog.current_setting('sqlml.sentiment_model', true) AS sentiment_model,
       session_user AS login,
       pg_catalog.statement_timestamp()::pg_catalog.text AS statement
"""

# The tokens that may apply to the login role, most specific first: tokens stored for the role or a
# role it is a member of (nearest first; membership read from pg_auth_members, so a superuser is not
# counted as a member of every role, as pg_has_role would), then the default (role 0). Each row
# also carries the models granted to the role and its groups (ml.grant). Runs only inside SECURITY
# DEFINER functions owned by the extension owner, the one role that can read the private tables.
TOKEN_SQL = """
WITH RECURSIVE member_of(roleid, depth) AS (
    SELECT r.oid, 0 FROM pg_catalog.pg_roles r WHERE r.rolname = session_user
  UNION ALL
    SELECT m.roleid, g.depth + 1
      FROM pg_catalog.pg_auth_members m JOIN member_of g ON m.member = g.roleid
     WHERE g.depth < 32
), nearest AS (
    SELECT roleid, pg_catalog.min(depth) AS depth FROM member_of GROUP BY roleid
)
SELECT t.token, t.bridge_url, n.depth,
       (SELECT pg_catalog.array_agg(DISTINCT g.model ORDER BY g.model)
          FROM sqlml_private.model_grants g JOIN nearest n2 ON n2.roleid = g.role_oid) AS grants
  FROM sqlml_private.bridge_tokens t LEFT JOIN nearest n ON n.roleid = t.role_oid
 WHERE t.role_oid = 0 OR n.roleid IS NOT NULL
 ORDER BY t.role_oid = 0, n.depth, t.role_oid
"""

_plans: dict[str, Any] = {}
_token_cache: dict[str, tuple[float, Credential | None]] = {}


@dataclass(frozen=True)
class Credential:
    """A bearer token and the one bridge URL it may be sent to."""

    token: str
    bridge_url: str


def _plan(plpy: Any, sql: str) -> Any:
    plan = _plans.get(sql)
    if plan is None:
        plan = _plans[sql] = plpy.prepare(sql)
    return plan


def read_settings(plpy: Any, with_token: bool = True) -> Settings:
    """The `sqlml.*` settings in effect now (session, role or database), checked.

    The token is attached only when this session's bridge URL is the one stored with it: a role that
    may change `sqlml.bridge_url` can point its own calls elsewhere, but never the token."""
    row = plpy.execute(_plan(plpy, SETTINGS_SQL))[0]
    credential = _credential(plpy, row["login"]) if with_token else None
    configured = (row["bridge_url"] or "").strip()
    url = normalize_url(configured) if configured else (credential.bridge_url if credential else DEFAULT_BRIDGE_URL)
    timeout_ms = _int_setting("sqlml.timeout_ms", row["timeout_ms"], DEFAULT_TIMEOUT_MS, 1, 3_600_000)
    batch_size = _int_setting("sqlml.batch_size", row["batch_size"], 10_000, 1, MAX_BATCH_SIZE)
    on_error = (row["on_error"] or "raise").strip().lower()
    if on_error not in ("raise", "null"):
        raise BridgeError("invalid_setting", f"sqlml.on_error must be 'raise' or 'null', got {on_error!r}")
    token = credential.token if credential and credential.bridge_url == url else None
    withheld = credential.bridge_url if credential and token is None else None
    model = row["sentiment_model"] or "sentiment"
    return Settings(url, timeout_ms, batch_size, on_error, model, token, withheld, row.get("statement") or "")


def normalize_url(text: str) -> str:
    """A bridge URL in the one form tokens are bound to: scheme and host lowercased, no trailing '/'.
    Anything but a plain http(s) URL (query, fragment, user info) is refused."""
    parsed = urllib.parse.urlsplit(text.strip())
    if (
        parsed.scheme.lower() not in ("http", "https")
        or not parsed.hostname
        or parsed.username is not None
        or parsed.query
        or parsed.fragment
    ):
        raise BridgeError(
            "invalid_setting",
            f"sqlml.bridge_url must be an http(s) URL like http://host:port, got {text[:200]!r}",
            hint="SET sqlml.bridge_url = 'http://host:port'",
        )
    try:
        port = parsed.port
    except ValueError:
        raise BridgeError("invalid_setting", f"the bridge URL {text[:200]!r} has an invalid port") from None
    host = parsed.hostname.lower()
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    return f"{parsed.scheme.lower()}://{netloc}{parsed.path.rstrip('/')}"


def _int_setting(name: str, text: str | None, default: int, low: int, high: int) -> int:
    if text is None or text.strip() == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BridgeError("invalid_setting", f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise BridgeError("invalid_setting", f"{name} must be between {low} and {high}, got {value}")
    return value


def _credential(plpy: Any, login: str) -> Credential | None:
    """The token for the login role, cached for a few seconds per role (one query per row else)."""
    cached = _token_cache.get(login)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    credential = choose_credential(list(plpy.execute(_plan(plpy, TOKEN_SQL))), login)
    _token_cache[login] = (time.monotonic() + TOKEN_CACHE_SECONDS, credential)
    return credential


def choose_credential(rows: Sequence[Any], login: str) -> Credential | None:
    """From TOKEN_SQL's rows: a token stored for the role (or its nearest group) as is; else, for a
    role with per-model grants, the default token narrowed to those models; else the default."""
    own = [r for r in rows if r["depth"] is not None]
    if own:
        return Credential(own[0]["token"], own[0]["bridge_url"])
    default = rows[-1] if rows else None
    if default is None:
        return None
    grants = list(default["grants"] or [])
    if grants:
        scopes = [f"predict:{model}" for model in grants]
        return Credential(derive_token(default["token"], scopes, login), default["bridge_url"])
    return Credential(default["token"], default["bridge_url"])


DERIVED_PREFIX = "sqlmld1."


def derive_token(parent: str, scopes: Sequence[str], subject: str) -> str:
    """A token the bridge accepts with at most `scopes` (and never more than `parent` holds),
    made without asking the bridge: an HMAC of the scopes keyed by the parent token. The format is
    the bridge's (sqlml.bridge.auth.derive_token); a test compares the two."""
    payload = {"p": hashlib.sha256(parent.encode()).hexdigest()[:16], "s": sorted(scopes), "sub": subject}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    encoded = base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()
    mac = hmac.new(parent.encode(), encoded.encode(), hashlib.sha256).hexdigest()
    return f"{DERIVED_PREFIX}{encoded}.{mac}"


def forget_token() -> None:
    """Called by ml.set_token() and ml.grant() so this session sees the change at once (others
    within TOKEN_CACHE_SECONDS)."""
    _token_cache.clear()
    _last_row.clear()


# --- HTTP ----------------------------------------------------------------------------------


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
        answer = self.call("POST", f"/v1/models/{_quote(model)}/predict", '{"rows":' + rows_array_json + "}")
        rows = answer.get("rows") if isinstance(answer, dict) else None
        if not isinstance(rows, list) or (expected_rows is not None and len(rows) != expected_rows):
            raise BridgeError(
                "bad_response",
                f'the bridge answered predict for "{model}" with a malformed body',
                detail={"expected_rows": expected_rows, "got": _shape(answer)},
            )
        return rows

    def predict_columns(self, model: str, columns: dict[str, list[Any]], count: int) -> dict[str, list[Any]]:
        answer = self.call("POST", f"/v1/models/{_quote(model)}/predict", {"columns": columns})
        out = answer.get("columns") if isinstance(answer, dict) else None
        if not isinstance(out, dict) or any(not isinstance(v, list) or len(v) != count for v in out.values()):
            raise BridgeError(
                "bad_response",
                f'the bridge answered predict for "{model}" with a malformed body',
                detail={"expected_rows": count, "got": _shape(answer)},
            )
        return out


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


def _quote(model: str) -> str:
    return urllib.parse.quote(model, safe=":")


def _shape(answer: Any) -> str:
    if isinstance(answer, dict):
        return "object with keys " + ", ".join(sorted(map(str, answer))[:10])
    return type(answer).__name__


def check_model(model: str) -> str:
    """A model reference (`name`, `name:3`, `name:staging`) safe for URLs and generated SQL."""
    if not isinstance(model, str) or not MODEL_REF.match(model):
        raise BridgeError(
            "invalid_name",
            f"invalid model name {str(model)[:80]!r}",
            hint="a model is name, name:version or name:alias; names use lowercase letters, digits and "
            "underscores, starting with a letter",
        )
    return model


# --- errors into SQL -----------------------------------------------------------------------


_error_classes: dict[int, type] = {}


def _sql_error_class(plpy: Any) -> type:
    """A plpy.Error subclass that PL/Python reports as "sqlml: <message>".

    PL/Python prefixes the message with the exception's module and type ("plpy.Error: ..."),
    except for the module "builtins"; it reads sqlstate, detail and hint from the instance."""
    cls = _error_classes.get(id(plpy.Error))
    if cls is None:
        cls = _error_classes[id(plpy.Error)] = type("sqlml", (plpy.Error,), {"__module__": "builtins"})
    return cls


def raise_sql(plpy: Any, error: BridgeError) -> None:
    exception = _sql_error_class(plpy)(error.message)
    exception.sqlstate = error.sqlstate
    if error.hint:
        exception.hint = error.hint
    detail = error.detail_text()
    if detail:
        exception.detail = detail
    raise exception


def _report(plpy_function: Any, message: str, error: BridgeError) -> None:
    """plpy.warning/notice with only the fields that are set (None would print as "None")."""
    fields = {"sqlstate": error.sqlstate}
    if error.hint:
        fields["hint"] = error.hint
    detail = error.detail_text()
    if detail:
        fields["detail"] = detail
    plpy_function(message, **fields)


def from_spi_error(exc: Any) -> BridgeError:
    """A BridgeError carrying an SPI error (from a nested ml._predict_rows or the caller's query)."""
    message = str(exc.args[0] if exc.args else exc)
    message = message[len("sqlml: ") :] if message.startswith("sqlml: ") else message
    # PL/Python keeps an SPI error's fields in `spidata`: (sqlstate, detail, hint, query, position, ...)
    spidata = getattr(exc, "spidata", None) or ()
    detail = spidata[1] if len(spidata) > 1 else None
    hint = spidata[2] if len(spidata) > 2 else None
    error = BridgeError("internal_error", message, hint, detail)
    error.sqlstate_override = getattr(exc, "sqlstate", None)
    return error


class _Warnings:
    """At most a few WARNINGs per call, then one summary, so a bad column cannot flood the client."""

    def __init__(self, plpy: Any):
        self.plpy = plpy
        self.count = 0

    def warn(self, error: BridgeError, rows: int) -> None:
        self.count += 1
        if self.count <= MAX_WARNINGS_PER_CALL:
            suffix = f" ({rows} row{'s' if rows != 1 else ''} set to NULL)"
            _report(self.plpy.warning, error.message + suffix, error)

    def finish(self) -> None:
        if self.count > MAX_WARNINGS_PER_CALL:
            self.plpy.warning(f"sqlml: {self.count - MAX_WARNINGS_PER_CALL} more scoring failures not shown")


def _guard(plpy: Any, settings: Settings | None, error: BridgeError, warnings: _Warnings | None = None) -> None:
    """Raise `error` as SQL, or in 'null' mode warn and let the caller return NULL."""
    if settings is None or settings.on_error != "null":
        raise_sql(plpy, error)
    (warnings or _Warnings(plpy)).warn(error, 1)


# --- row scoring with per-row isolation ----------------------------------------------------


def score_rows(bridge: Bridge, model: str, rows_json: Sequence[str], warnings: _Warnings) -> list[Any]:
    """Outputs for `rows_json`; in 'null' mode a rejected batch is halved until the bad rows are
    found (log2(n) extra requests per bad row) and those rows get None."""
    try:
        return bridge.predict(model, rows_json)
    except BridgeError as error:
        if bridge.settings.on_error != "null":
            raise
        return _after_failure(bridge, model, rows_json, error, warnings)


def _after_failure(
    bridge: Bridge, model: str, rows_json: Sequence[str], error: BridgeError, warnings: _Warnings
) -> list[Any]:
    """'null' mode, once `rows_json` failed as a whole with `error`: a row-level error halves the
    batch to find the bad rows; any other (or a single row) sets them all to None with a warning."""
    if error.code in ROW_LEVEL_CODES and len(rows_json) > 1:
        middle = len(rows_json) // 2
        return score_rows(bridge, model, rows_json[:middle], warnings) + score_rows(
            bridge, model, rows_json[middle:], warnings
        )
    warnings.warn(error, len(rows_json))
    return [None] * len(rows_json)


def _result_json(row: Any) -> str | None:
    """One jsonb result; NULL when the bridge gave only NULL outputs (NULL in, NULL out)."""
    if not isinstance(row, dict) or all(value is None for value in row.values()):
        return None
    return json.dumps(row, separators=(",", ":"))


def _is_object_text(text: str) -> bool:
    return text[:1] == "{"  # jsonb's text form of an object always starts with "{"


# --- the SQL functions ---------------------------------------------------------------------


def _open(plpy: Any, with_token: bool = True) -> tuple[Settings, Bridge]:
    try:
        settings = read_settings(plpy, with_token)
    except BridgeError as error:
        raise_sql(plpy, error)
        raise
    return settings, Bridge(settings, lambda: _check_interrupts(plpy))


def _check_interrupts(plpy: Any) -> None:
    """Run a trivial statement: PostgreSQL's executor checks for a pending cancel or
    statement_timeout there and raises it (as plpy.SPIError, which then ends the call)."""
    plpy.execute(_plan(plpy, "SELECT 1"))


def predict(plpy: Any, model: str, features: str, only_inputs: bool = False) -> str | None:
    """ml.predict(model, features jsonb) -> jsonb of the model's outputs. With `only_inputs` (the
    record form, ml.predict(model, t)), columns that are not the model's inputs (keys, the target)
    are left out, as DuckDB's ml.predict leaves them out."""
    settings, bridge = _open(plpy)
    try:
        check_model(model)
        if not _is_object_text(features):
            raise BridgeError(
                "invalid_input",
                "features must be a JSON object of column: value",
                hint="""for example '{"mostype": 33, "maothers": 0}'::jsonb or to_jsonb(t)""",
            )
        if only_inputs:
            row, inputs = json.loads(features), model_inputs(bridge, model)
            features = json.dumps({name: row[name] for name in inputs if name in row} or row)
        return _result_json(bridge.predict(model, [features])[0])
    except BridgeError as error:
        _guard(plpy, settings, error)
        return None


INPUTS_CACHE_SECONDS = 30.0
_inputs_cache: dict[tuple[str, str], tuple[float, list[str]]] = {}


def model_inputs(bridge: Bridge, model: str) -> list[str]:
    """The input columns of the version `model` names, from the bridge (cached for a few seconds)."""
    key = (bridge.settings.bridge_url, model)
    cached = _inputs_cache.get(key)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    answer = bridge.call("GET", f"/v1/models/{_quote(model)}")
    manifest = answer.get("manifest") if isinstance(answer, dict) else None
    inputs = ((manifest or {}).get("signature") or {}).get("inputs") if isinstance(manifest, dict) else None
    if not isinstance(inputs, list):
        raise BridgeError("bad_response", f'the bridge described model "{model}" without a signature')
    names = [str(c.get("name")) for c in inputs if isinstance(c, dict)]
    _inputs_cache[key] = (time.monotonic() + INPUTS_CACHE_SECONDS, names)
    return names


def inputs_of(plpy: Any, model: str) -> list[str]:
    """ml._model_inputs(model): the model's input columns, for the SECURITY INVOKER paths."""
    _settings, bridge = _open(plpy)
    try:
        check_model(model)
        return model_inputs(bridge, model)
    except BridgeError as error:
        raise_sql(plpy, error)
        raise


# The last per-row result of this session, keyed by the statement and the call: PostgreSQL expands
# `(ml.f(x)).*` into one call per output column, and these calls come one after the other with the
# same arguments, so the second and later ones cost no request. Lifecycle calls clear it.
_last_row: dict[str, tuple[str, Any]] = {}


def _once_per_statement(settings: Settings, call: str, score: Callable[[], Any]) -> Any:
    key = settings.statement + "|" + hashlib.sha256(call.encode()).hexdigest()
    last = _last_row.get("row")
    if last is not None and last[0] == key and settings.statement:
        return last[1]
    result = score()
    _last_row["row"] = (key, result)
    return result


def forget_results() -> None:
    _last_row.clear()


def predict_typed(plpy: Any, model: str, inputs: Sequence[str], outputs: Sequence[str], values: Sequence[Any]) -> Any:
    """Body of a function generated by ml.sync(): one output -> its value, several -> a record."""
    settings, bridge = _open(plpy)
    try:
        features = json.dumps(dict(zip(inputs, values, strict=True)), default=str)
        row = _once_per_statement(settings, model + "\n" + features, lambda: bridge.predict(model, [features])[0])
        if not isinstance(row, dict):
            raise BridgeError("bad_response", f'the bridge answered predict for "{model}" with a malformed row')
        if len(outputs) == 1:
            return row.get(outputs[0])
        return {name: row.get(name) for name in outputs}
    except BridgeError as error:
        _guard(plpy, settings, error)
        return None


def sentiment(plpy: Any, text: str) -> dict[str, Any] | None:
    """ml.sentiment(text) -> (label, confidence)."""
    settings, bridge = _open(plpy)
    try:
        model, features = settings.sentiment_model, json.dumps({"text": text})
        row = _once_per_statement(settings, model + "\n" + features, lambda: bridge.predict(model, [features])[0])
        if not isinstance(row, dict):
            raise BridgeError("bad_response", "the bridge answered sentiment with a malformed row")
        if row.get("label") is None:
            return None
        return {"label": row.get("label"), "confidence": row.get("confidence")}
    except BridgeError as error:
        _guard(plpy, settings, error)
        return None


def predict_batch(plpy: Any, model: str, rows: Sequence[str | None]) -> Iterator[tuple[int, str | None]]:
    """ml.predict_batch(model, jsonb[]) -> (ord, result), ord 1-based, NULL element -> NULL result."""
    settings, bridge = _open(plpy)
    warnings = _Warnings(plpy)
    try:
        check_model(model)
        sizer, start = ChunkSizer(settings), 0
        while start < len(rows):
            chunk = rows[start : start + sizer.size]
            with sizer.timing(len(chunk)):
                scored = list(_score_chunk(bridge, model, chunk, start, warnings))
            yield from scored
            start += len(chunk)
    except BridgeError as error:
        raise_sql(plpy, error)
    warnings.finish()


class ChunkSizer:
    """Rows per request of the batch paths. It starts at the bridge's default batch size (64) and
    doubles while requests come back in under an eighth of sqlml.timeout_ms, up to sqlml.batch_size;
    one that takes over half of it halves the next. So a fast model soon sends sqlml.batch_size rows
    per request, while a CPU transformer's requests stay at what it scores in a fraction of the
    timeout, and no request of the batch paths outlasts sqlml.timeout_ms by its size alone."""

    START = 64

    def __init__(self, settings: Settings, start: int = START):
        self.limit = settings.batch_size
        self.timeout_s = settings.timeout_ms / 1000.0
        self.size = max(1, min(start, self.limit))

    def record(self, rows: int, seconds: float) -> None:
        if seconds > self.timeout_s / 2:
            self.size = max(1, self.size // 2)
        elif seconds < self.timeout_s / 8 and rows >= self.size:
            self.size = min(self.limit, self.size * 2)

    @contextmanager
    def timing(self, rows: int) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.record(rows, time.monotonic() - started)


def _score_chunk(
    bridge: Bridge, model: str, chunk: Sequence[str | None], offset: int, warnings: _Warnings
) -> Iterator[tuple[int, str | None]]:
    present = [i for i, row in enumerate(chunk) if row is not None]
    bad = [i for i in present if not _is_object_text(chunk[i])]  # type: ignore[arg-type]
    if bad:
        error = BridgeError(
            "invalid_input",
            f"element {offset + bad[0] + 1} of the rows array is not a JSON object",
            hint="each element must be an object of column: value, e.g. to_jsonb(t)",
        )
        if bridge.settings.on_error != "null":
            raise error
        warnings.warn(error, len(bad))
        present = [i for i in present if i not in set(bad)]
    outputs = score_rows(bridge, model, [chunk[i] for i in present], warnings) if present else []  # type: ignore[misc]
    results: list[str | None] = [None] * len(chunk)
    for position, output in zip(present, outputs, strict=True):
        results[position] = _result_json(output)
    for position, result in enumerate(results):
        yield offset + position + 1, result


def predict_rows_json(plpy: Any, model: str, rows_json: str) -> str:
    """ml._predict_rows(model, text): the SECURITY DEFINER step of ml.predict_query — scores a JSON
    array of row objects and returns a JSON array of results (null for failed rows)."""
    _settings, bridge = _open(plpy)
    warnings = _Warnings(plpy)
    try:
        check_model(model)
        try:  # the array goes to the bridge as it came, unparsed: the common case costs no JSON work here
            outputs = bridge.predict_array(model, rows_json)
        except BridgeError as error:
            if bridge.settings.on_error != "null":
                raise
            # one text per row, so that the failed batch can be halved down to the bad rows
            texts = [json.dumps(row, separators=(",", ":")) for row in json.loads(rows_json)]
            outputs = _after_failure(bridge, model, texts, error, warnings)
    except BridgeError as error:
        raise_sql(plpy, error)
        raise
    warnings.finish()
    return json.dumps([_result_json(o) for o in outputs])


def sentiment_batch(plpy: Any, texts: Sequence[str | None]) -> Iterator[tuple[int, str | None, float | None]]:
    """ml.sentiment_batch(text[]) -> (ord, label, confidence)."""
    settings, bridge = _open(plpy)
    warnings = _Warnings(plpy)
    model = settings.sentiment_model
    sizer, start = ChunkSizer(settings), 0
    try:
        while start < len(texts):
            chunk = list(texts[start : start + sizer.size])
            try:
                with sizer.timing(len(chunk)):
                    columns = bridge.predict_columns(model, {"text": chunk}, len(chunk))
                labels, confidences = columns.get("label"), columns.get("confidence")
                if labels is None or confidences is None:
                    raise BridgeError("bad_response", f'model "{model}" did not return label and confidence')
            except BridgeError as error:
                if settings.on_error != "null":
                    raise
                warnings.warn(error, len(chunk))
                labels = confidences = [None] * len(chunk)
            for position, (label, confidence) in enumerate(zip(labels, confidences, strict=True)):
                yield start + position + 1, label, (confidence if label is not None else None)
            start += len(chunk)
    except BridgeError as error:
        raise_sql(plpy, error)
    warnings.finish()


def predict_query(plpy: Any, model: str, query: str, key: str) -> Iterator[tuple[str | None, str | None]]:
    """ml.predict_query(model, query, key) -> (key, result), streamed in chunks of sqlml.batch_size.

    Runs as the caller (SECURITY INVOKER): the caller's query is read with the caller's rights
    through a server-side cursor, and each chunk goes to the bridge through ml._predict_rows, the
    SECURITY DEFINER function that alone can read the bridge token.

    The first chunk is scored before this returns, so that a bad query, a missing column or a
    bridge that is down fail with their own message; PL/Python reports an error raised later,
    while iterating, as "error fetching next item from iterator" with the message as DETAIL."""
    try:
        check_model(model)
        body = check_query(query)
        if not isinstance(key, str) or not key:
            raise BridgeError("invalid_query", "key must name a column of the query")
        settings = read_settings(plpy, with_token=False)
    except BridgeError as error:
        raise_sql(plpy, error)
        raise
    key_ident = plpy.quote_ident(key)
    left_out = [key, *_not_inputs(plpy, model, body, key)]
    dropped = "ARRAY[" + ", ".join(plpy.quote_literal(name) for name in left_out) + "]::pg_catalog.text[]"
    # The caller's query becomes a subquery: one statement, and a data-modifying WITH is rejected
    # by PostgreSQL there ("must be at the top level").
    wrapped = (
        f"SELECT (q.{key_ident})::pg_catalog.text AS sqlml_key, "
        f"(pg_catalog.to_jsonb(q) OPERATOR(pg_catalog.-) {dropped})::pg_catalog.text"
        f" AS sqlml_features FROM (\n{body}\n) AS q"
    )
    # Every name this SECURITY INVOKER code adds is schema-qualified: the caller's search_path
    # resolves only the caller's own query.
    score = _plan_typed(plpy, "SELECT ml._predict_rows($1, $2) AS results", ["pg_catalog.text", "pg_catalog.text"])
    try:
        cursor = plpy.cursor(wrapped)
        sizer = ChunkSizer(settings)
        first = _score_query_chunk(plpy, cursor, score, model, sizer)
    except plpy.SPIError as exc:
        error = from_spi_error(exc)
        if error.sqlstate == "42703" and f"q.{key}" in error.message:
            error.message, error.hint = f'the query has no column "{key}" (the key)', "key names a column of the query"
        raise_sql(plpy, error)
        raise
    except BridgeError as error:
        raise_sql(plpy, error)
        raise
    return _stream_query(plpy, cursor, score, model, sizer, first)


def _not_inputs(plpy: Any, model: str, body: str, key: str) -> list[str]:
    """The query's columns that are not inputs of the model (other than the key): left out, so that
    `SELECT *` over a table with ids and the target scores as DuckDB does. Said once, in a NOTICE."""
    try:
        columns = list(plpy.execute(f"SELECT * FROM (\n{body}\n) AS q LIMIT 0").colnames())
        plan = _plan_typed(plpy, "SELECT ml._model_inputs($1) AS inputs", ["pg_catalog.text"])
        inputs = set(plpy.execute(plan, [model])[0]["inputs"] or [])
    except plpy.SPIError as exc:
        raise_sql(plpy, from_spi_error(exc))
        raise
    extra = [c for c in columns if c != key and c not in inputs]
    if extra and inputs.intersection(columns):
        shown = ", ".join(extra[:10]) + (f" and {len(extra) - 10} more" if len(extra) > 10 else "")
        plpy.notice(f"sqlml: {shown} {'is not an input' if len(extra) == 1 else 'are not inputs'} of {model}: left out")
        return extra
    return []  # no input at all among the columns: the bridge names the missing ones


def _stream_query(
    plpy: Any, cursor: Any, score: Any, model: str, sizer: ChunkSizer, first: tuple[int, list[Any]]
) -> Iterator[tuple[str | None, str | None]]:
    asked, chunk = first
    while chunk:
        yield from chunk
        if len(chunk) < asked:
            return
        try:
            asked, chunk = _score_query_chunk(plpy, cursor, score, model, sizer)
        except plpy.SPIError as exc:
            raise_sql(plpy, from_spi_error(exc))
        except BridgeError as error:
            raise_sql(plpy, error)


def _score_query_chunk(
    plpy: Any, cursor: Any, score: Any, model: str, sizer: ChunkSizer
) -> tuple[int, list[tuple[str | None, str | None]]]:
    """(rows asked of the cursor, the scored (key, result) pairs of the rows it gave)."""
    asked = sizer.size
    rows = cursor.fetch(asked)
    if not len(rows):
        return asked, []
    payload = "[" + ",".join(row["sqlml_features"] for row in rows) + "]"
    with sizer.timing(len(rows)):
        results = json.loads(plpy.execute(score, [model, payload])[0]["results"])
    if len(results) != len(rows):
        raise BridgeError(
            "bad_response",
            f'the bridge answered predict for "{model}" with {len(results)} rows for {len(rows)}',
            detail={"expected_rows": len(rows), "got": len(results)},
        )
    return asked, [(row["sqlml_key"], result) for row, result in zip(rows, results, strict=True)]


def _plan_typed(plpy: Any, sql: str, types: list[str]) -> Any:
    key = sql + "|" + ",".join(types)
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = plpy.prepare(sql, types)
    return plan


def check_query(query: str) -> str:
    """The query without a trailing semicolon, if it is exactly one SELECT / WITH / VALUES / TABLE
    statement. Quotes, dollar quotes and comments are skipped so `;` inside them is fine."""
    if not isinstance(query, str) or not query.strip():
        raise BridgeError("invalid_query", "the query is empty")
    statements = [s for s in _split_statements(query) if s.strip()]
    if len(statements) != 1:
        raise BridgeError(
            "invalid_query",
            "ml.predict_query takes exactly one SELECT statement",
            hint="remove the extra statements (a ';' outside quotes ends a statement)",
        )
    text = statements[0]
    first = re.match(r"[\s(]*([A-Za-z]+)", _strip_comments(text))
    if not first or first.group(1).lower() not in ("select", "with", "values", "table"):
        raise BridgeError(
            "invalid_query",
            "ml.predict_query takes a SELECT (or WITH ... SELECT) query",
            hint="for example 'SELECT id, mostype, maothers FROM leads'",
        )
    return text


def _split_statements(sql: str) -> list[str]:
    out, start, i, n = [], 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif c == "/" and sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif c in ("'", '"'):
            i = _skip_quoted(sql, i, c)
        elif c == "$" and (tag := re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])):
            end = sql.find(tag.group(0), i + len(tag.group(0)))
            if end < 0:
                raise BridgeError("invalid_query", "unterminated dollar-quoted string in the query")
            i = end + len(tag.group(0))
        elif c == ";":
            out.append(sql[start:i])
            start = i = i + 1
        else:
            i += 1
    out.append(sql[start:])
    return out


def _skip_quoted(sql: str, i: int, quote: str) -> int:
    j = i + 1
    while True:
        j = sql.find(quote, j)
        if j < 0:
            raise BridgeError("invalid_query", "unterminated quoted string or identifier in the query")
        if sql.startswith(quote * 2, j):
            j += 2  # a doubled quote inside the literal
            continue
        return j + 1


def _skip_block_comment(sql: str, i: int) -> int:
    depth, j = 0, i
    while j < len(sql):
        if sql.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif sql.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    raise BridgeError("invalid_query", "unterminated /* comment in the query")


def _strip_comments(sql: str) -> str:
    text = sql.lstrip()
    while text.startswith(("--", "/*")):
        text = (
            text[text.find("\n") + 1 :]
            if text.startswith("--") and "\n" in text
            else (text[_skip_block_comment(text, 0) :] if text.startswith("/*") else "")
        )
        text = text.lstrip()
    return text


def explain(plpy: Any, model: str, features: str, top_k: int) -> Iterator[tuple[str, Any, float | None]]:
    """ml.explain(model, features, top_k) -> (feature, value, contribution), largest first."""
    _settings, bridge = _open(plpy)
    try:
        check_model(model)
        if not _is_object_text(features):
            raise BridgeError("invalid_input", "features must be a JSON object of column: value")
        if not 1 <= top_k <= 10_000:
            raise BridgeError("bad_request", f"top_k must be between 1 and 10000, got {top_k}")
        answer = bridge.call(
            "POST", f"/v1/models/{_quote(model)}/explain", '{"rows":[' + features + '],"top_k":' + str(int(top_k)) + "}"
        )
        rows = answer.get("rows") if isinstance(answer, dict) else None
        if not isinstance(rows, list) or len(rows) != 1:
            raise BridgeError("bad_response", f'the bridge answered explain for "{model}" with a malformed body')
        for item in (rows[0] or {}).get("contributions") or []:
            yield item.get("feature"), _float_or_none(item.get("value")), item.get("contribution")
    except BridgeError as error:
        raise_sql(plpy, error)


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def forecast(
    plpy: Any, model: str, series: str | None, horizon: int, quantiles: Sequence[str] | None
) -> Iterator[tuple[str | None, str, str, float | None]]:
    """ml.forecast(model, series, horizon, quantiles) -> (series, ts, quantile, value)."""
    _settings, bridge = _open(plpy)
    try:
        check_model(model)
        if horizon is None or not 1 <= horizon <= 100_000:
            raise BridgeError("bad_request", f"horizon must be between 1 and 100000, got {horizon}")
        payload = {
            "series": [series] if series is not None else None,
            "horizon": int(horizon),
            "quantiles": list(quantiles) if quantiles is not None else ["p10", "p50", "p90"],
        }
        answer = bridge.call("POST", f"/v1/models/{_quote(model)}/forecast", payload)
        rows = answer.get("rows") if isinstance(answer, dict) else None
        if not isinstance(rows, list):
            raise BridgeError("bad_response", f'the bridge answered forecast for "{model}" with a malformed body')
        for row in rows:
            yield row.get("series"), row.get("ts"), row.get("quantile"), row.get("value")
    except BridgeError as error:
        raise_sql(plpy, error)


GRANTEES_SQL = """
SELECT g.model, pg_catalog.array_agg(r.rolname::pg_catalog.text ORDER BY r.rolname) AS roles
  FROM sqlml_private.model_grants g JOIN pg_catalog.pg_roles r ON r.oid = g.role_oid
 GROUP BY g.model
"""


def models(plpy: Any) -> Iterator[dict[str, Any]]:
    """ml.models(): one row per model the bridge serves, with the roles granted it (ml.grant)."""
    grantees = {row["model"]: list(row["roles"]) for row in plpy.execute(_plan(plpy, GRANTEES_SQL))}
    for entry in _model_list(plpy):
        yield {
            "granted_to": grantees.get(entry.get("name"), []),
            "name": entry.get("name"),
            "version": entry.get("version"),
            "versions": entry.get("versions") or [],
            "aliases": json.dumps(entry.get("aliases") or {}),
            "task": entry.get("task"),
            "runtime": entry.get("runtime"),
            "description": entry.get("description"),
            "signature": json.dumps(entry.get("signature") or {}),
            "metrics": json.dumps(entry.get("metrics") or {}),
            "loaded": entry.get("loaded"),
        }


def _model_list(plpy: Any) -> list[dict[str, Any]]:
    _settings, bridge = _open(plpy)
    try:
        answer = bridge.call("GET", "/v1/models")
        entries = answer.get("models") if isinstance(answer, dict) else None
        if not isinstance(entries, list):
            raise BridgeError("bad_response", "the bridge answered /v1/models with a malformed body")
        return [e for e in entries if isinstance(e, dict)]
    except BridgeError as error:
        raise_sql(plpy, error)
        raise


def health(plpy: Any) -> str:
    """ml.health(): the bridge's /readyz answer, or an error saying why it is not ready."""
    _settings, bridge = _open(plpy)
    try:
        return json.dumps(bridge.call("GET", "/readyz"))
    except BridgeError as error:
        raise_sql(plpy, error)
        raise


def deploy(plpy: Any, model: str, version: int, alias: str) -> str:
    """ml.deploy(model, version, alias): point the alias at the version (PUT aliases route)."""
    forget_results()
    _settings, bridge = _open(plpy)
    try:
        check_model(model)
        _check_alias(alias)
        answer = bridge.call("PUT", f"/v1/models/{_quote(model)}/aliases/{_quote(alias)}", {"version": int(version)})
        if alias == "production" and previous_identity(plpy, model):
            # the typed function serves production: a version with other inputs or outputs re-syncs it
            for _model, function, action in sync(plpy, only=model):
                if action != "unchanged":
                    plpy.notice(f"sqlml: version {version} of {model} has another signature: {function} {action}")
        return json.dumps(answer)
    except BridgeError as error:
        raise_sql(plpy, error)
        raise


def rollback(plpy: Any, model: str, alias: str) -> int | None:
    """ml.rollback(model, alias): move the alias back to its previous version; returns it."""
    forget_results()
    _settings, bridge = _open(plpy)
    try:
        check_model(model)
        _check_alias(alias)
        answer = bridge.call("POST", f"/v1/models/{_quote(model)}/rollback", {"alias": alias}, idempotent=False)
        return answer.get("version") if isinstance(answer, dict) else None
    except BridgeError as error:
        raise_sql(plpy, error)
        raise


def _check_alias(alias: str) -> None:
    if not isinstance(alias, str) or not NAME.match(alias) or alias in RESERVED_ALIASES:
        raise BridgeError(
            "invalid_name",
            f"invalid alias {str(alias)[:80]!r}",
            hint="aliases use lowercase letters, digits and '_', starting with a letter; "
            f"{', '.join(sorted(RESERVED_ALIASES))} is reserved",
        )


def _check_plain_name(name: str, what: str = "model name") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise BridgeError(
            "invalid_name",
            f"invalid {what} {str(name)[:80]!r}",
            hint="names use lowercase letters, digits and underscores, starting with a letter",
        )
    return name


# --- tokens and per-model grants -----------------------------------------------------------


TOKEN_TEXT = re.compile(r"[\x21-\x7e]{1,4096}\Z")
ROLE_OID_SQL = "SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $1"


def _role_oid(plpy: Any, role_name: str) -> int:
    found = plpy.execute(_plan_typed(plpy, ROLE_OID_SQL, ["pg_catalog.name"]), [role_name])
    if not len(found):
        raise BridgeError("not_found", f"role {role_name!r} does not exist")
    return int(found[0]["oid"])


def set_token(plpy: Any, token: str | None, role_name: str | None, bridge_url: str | None) -> None:
    """ml.set_token(token, role_name, bridge_url): store (or with a NULL token remove) the token of a
    role (NULL: the default for every role), bound to one bridge URL: the one given, else this
    session's sqlml.bridge_url, else the default. The token is never sent anywhere else."""
    try:
        role_oid = 0 if role_name is None else _role_oid(plpy, role_name)
        who = "every role without a token of its own" if role_name is None else f"role {role_name}"
        if token is None:
            plpy.execute(
                _plan_typed(plpy, "DELETE FROM sqlml_private.bridge_tokens WHERE role_oid = $1", ["pg_catalog.oid"]),
                [role_oid],
            )
            plpy.notice(f"sqlml: removed the bridge token of {who}")
        else:
            if not TOKEN_TEXT.match(token):
                # a newline would end up in an HTTP header, and http.client's error quotes the header
                raise BridgeError(
                    "bad_request",
                    "a bridge token is 1 to 4096 printable ASCII characters, without spaces",
                    hint="check for a trailing newline, e.g. from a file: SELECT ml.set_token(trim(...))",
                )
            url = normalize_url(bridge_url) if bridge_url else read_settings(plpy, with_token=False).bridge_url
            plpy.execute(
                _plan_typed(
                    plpy,
                    "INSERT INTO sqlml_private.bridge_tokens (role_oid, token, bridge_url) VALUES ($1, $2, $3) "
                    "ON CONFLICT (role_oid) DO UPDATE SET token = EXCLUDED.token, bridge_url = EXCLUDED.bridge_url,"
                    " updated_at = pg_catalog.now()",
                    ["pg_catalog.oid", "pg_catalog.text", "pg_catalog.text"],
                ),
                [role_oid, token, url],
            )
            plpy.notice(f"sqlml: the bridge token of {who} is sent only to {url}")
    except BridgeError as error:
        raise_sql(plpy, error)
    forget_token()


def grant(plpy: Any, model: str, role_name: str) -> None:
    """ml.grant(model, role): the role (and its members) may score `model`. A role with grants scores
    with the default token narrowed to its granted models (a derived token the bridge checks), so it
    cannot score any other model."""
    try:
        _check_plain_name(model)
        role_oid = _role_oid(plpy, role_name)
        _settings, bridge = _open(plpy)
        bridge.call("GET", f"/v1/models/{_quote(model)}")  # a typo fails here, with close names
        plpy.execute(
            _plan_typed(
                plpy,
                "INSERT INTO sqlml_private.model_grants (model, role_oid) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                ["pg_catalog.text", "pg_catalog.oid"],
            ),
            [model, role_oid],
        )
        if not len(plpy.execute(_plan(plpy, "SELECT 1 FROM sqlml_private.bridge_tokens WHERE role_oid = 0"))):
            plpy.warning(
                "sqlml: grants narrow the default bridge token, and none is stored",
                hint="the extension owner stores one with SELECT ml.set_token('<token>')",
            )
    except BridgeError as error:
        raise_sql(plpy, error)
    forget_token()


def revoke(plpy: Any, model: str, role_name: str) -> None:
    """ml.revoke(model, role): undo ml.grant."""
    try:
        _check_plain_name(model)
        removed = plpy.execute(
            _plan_typed(
                plpy,
                "DELETE FROM sqlml_private.model_grants WHERE model = $1 AND role_oid = $2 RETURNING model",
                ["pg_catalog.text", "pg_catalog.oid"],
            ),
            [model, _role_oid(plpy, role_name)],
        )
        if not len(removed):
            plpy.notice(f"sqlml: role {role_name} had no grant of model {model}")
    except BridgeError as error:
        raise_sql(plpy, error)
    forget_token()


# --- ml.train: the caller's rows, read with the caller's rights ------------------------------

# ml.train is SECURITY INVOKER: it reads the training query through a cursor as the caller, so the
# rows are exactly those the caller may SELECT, whatever the query calls. The rows go to the bridge
# as an upload through two SECURITY DEFINER steps that can read the token but read no data.
UPLOAD_ROWS_PER_FETCH = 1_000
UPLOAD_BYTES_PER_REQUEST = 4_000_000
UPLOAD_ID = re.compile(r"[0-9a-f]{32}\Z")
# Uploads this session's ml.train filled, with the lineage it read them under (upload id -> source).
_trained_uploads: dict[str, dict[str, str]] = {}
SPEC_OPTIONS = ("features", "resources", "metric", "alias")


def train(
    plpy: Any,
    model: str,
    task: str,
    query: str,
    target: str,
    params: str | None,
    backend: str | None,
    promote: str | None,
) -> str:
    """ml.train(...): send the query's rows and a job spec to the bridge; returns the job id."""
    try:
        for name, value in (("model", model), ("task", task), ("query", query), ("target", target)):
            if value is None:
                raise BridgeError(
                    "bad_request",
                    f"{name} must not be NULL",
                    hint="ml.train(model, task, query, target [, params, backend, promote])",
                )
        _check_plain_name(model)
        body = check_query(query)
        options = json.loads(params) if params else {}
        if not isinstance(options, dict):
            raise BridgeError("bad_request", "params must be a jsonb object", hint="""e.g. '{"n_estimators": 200}'""")
    except BridgeError as error:
        raise_sql(plpy, error)
        raise
    rows_sql = f"SELECT * FROM (\n{body}\n) AS sqlml_training_rows"
    try:
        shape = plpy.execute(rows_sql + " LIMIT 0")
        columns = [{"name": n, "pg_type": int(t)} for n, t in zip(shape.colnames(), shape.coltypes(), strict=True)]
    except plpy.SPIError as exc:
        raise_sql(plpy, from_spi_error(exc))
        raise
    if target not in {c["name"] for c in columns}:
        names = ", ".join(c["name"] for c in columns[:20])
        raise_sql(plpy, BridgeError("bad_request", f'the query has no column "{target}" (the target)', hint=names))
    upload_id = _send_rows(plpy, rows_sql, columns)
    origin = plpy.execute(
        "SELECT pg_catalog.format('postgres database %s as role %s', pg_catalog.current_database(), current_user) AS o"
    )[0]["o"]
    # What ml._submit_job will send as lineage: recorded here, where the rows were read as the
    # caller, in this session's module state (only PL/Python code can write it), never taken
    # from the spec a direct caller of ml._submit_job could write.
    _trained_uploads[upload_id] = {"query": body, "origin": origin}
    spec: dict[str, Any] = {
        "model": model,
        "task": task,
        "source": {"upload": upload_id, "query": body, "origin": origin},
        "target": target,
        "params": options,
        "backend": backend or "local",
        "promote": promote or "if_better",
    }
    for key in SPEC_OPTIONS:  # a few spec fields may ride in params: one jsonb argument covers them
        if key in options:
            spec[key] = options.pop(key)
    plan = _plan_typed(plpy, "SELECT ml._submit_job($1::pg_catalog.jsonb) AS id", ["pg_catalog.text"])
    return str(plpy.execute(plan, [json.dumps(spec)])[0]["id"])


def _send_rows(plpy: Any, rows_sql: str, columns: list[dict[str, Any]]) -> str:
    start = _plan_typed(plpy, "SELECT ml._train_upload($1) AS id", ["pg_catalog.text"])
    append = _plan_typed(plpy, "SELECT ml._train_upload_rows($1, $2) AS n", ["pg_catalog.text", "pg_catalog.text"])
    upload_id = str(plpy.execute(start, [json.dumps({"columns": columns})])[0]["id"])
    cursor = plpy.cursor(
        "SELECT pg_catalog.row_to_json(sqlml_training_rows)::pg_catalog.text AS r FROM (\n"
        + rows_sql
        + "\n) AS sqlml_training_rows"
    )
    pending: list[str] = []
    size = sent = 0
    while True:
        try:
            fetched = cursor.fetch(UPLOAD_ROWS_PER_FETCH)
        except plpy.SPIError as exc:
            raise_sql(plpy, from_spi_error(exc))
            raise
        pending.extend(row["r"] for row in fetched)
        size += sum(len(row["r"]) for row in fetched)
        if pending and (size >= UPLOAD_BYTES_PER_REQUEST or len(fetched) < UPLOAD_ROWS_PER_FETCH):
            plpy.execute(append, [upload_id, '{"rows":[' + ",".join(pending) + "]}"])
            sent += len(pending)
            pending, size = [], 0
        if len(fetched) < UPLOAD_ROWS_PER_FETCH:
            break
    if not sent:
        raise_sql(plpy, BridgeError("bad_request", "the training query returned no rows"))
    plpy.notice(f"sqlml: sent {sent} training rows to the bridge")
    return upload_id


def upload_start(plpy: Any, columns_json: str) -> str:
    """ml._train_upload(columns): open an upload on the bridge; returns its id."""
    _settings, bridge = _open(plpy)
    try:
        answer = bridge.call("POST", "/v1/uploads", columns_json, idempotent=False)
        upload_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(upload_id, str) or not UPLOAD_ID.match(upload_id):
            raise BridgeError("bad_response", "the bridge answered POST /v1/uploads without an upload id")
        return upload_id
    except BridgeError as error:
        raise_sql(plpy, error)
        raise


def upload_rows(plpy: Any, upload_id: str, rows_json: str) -> int:
    """ml._train_upload_rows(id, rows): append rows (a JSON {"rows": [...]}) to an upload."""
    _settings, bridge = _open(plpy)
    try:
        if not isinstance(upload_id, str) or not UPLOAD_ID.match(upload_id):
            raise BridgeError("bad_request", "invalid upload id")
        answer = bridge.call("POST", f"/v1/uploads/{upload_id}/rows", rows_json, idempotent=False)
        return int(answer.get("rows", 0)) if isinstance(answer, dict) else 0
    except BridgeError as error:
        raise_sql(plpy, error)
        raise


def submit_job(plpy: Any, spec_json: str) -> str:
    """ml._submit_job(spec): POST a job spec whose rows are an upload, and nothing else: this step
    reads the token, so it never names a source the bridge would read itself (a file, a DSN)."""
    _settings, bridge = _open(plpy)
    try:
        spec = json.loads(spec_json)
        source = spec.get("source") if isinstance(spec, dict) else None
        upload = source.get("upload") if isinstance(source, dict) else None
        if (
            not isinstance(source, dict)
            or set(source) - {"upload", "query", "origin"}
            or upload not in _trained_uploads
        ):
            raise BridgeError(
                "forbidden",
                "ml._submit_job only sends rows uploaded by ml.train in this session",
                hint="call ml.train(model, task, query, target, ...)",
            )
        spec["source"] = {"upload": upload, **_trained_uploads.pop(upload)}
        answer = bridge.call("POST", "/v1/jobs", spec, idempotent=False)
        return str(answer["id"])
    except BridgeError as error:
        raise_sql(plpy, error)
        raise


# --- ml.sync(): typed per-model functions --------------------------------------------------
#
# ml.sync() never drops what a user made, and never uses CASCADE. An unchanged signature is left
# alone (only the function's comment follows the version). A changed one replaces the generated
# function only when nothing depends on it; when a view does, the old function stays, and a WARNING
# names the dependents and what to do. A result type that a table column uses is never dropped: the
# new signature gets a type of its own (ml.<model>_result_<fingerprint>).


@dataclass(frozen=True)
class GeneratedFunction:
    model: str
    arguments: str  # "mostype bigint, maothers bigint"
    identity: str  # "bigint, bigint" (for DROP FUNCTION)
    returns: str | None  # the one output's SQL type; None: a composite result type
    result_fields: str | None  # '"label" text, "p" double precision' for several outputs
    fingerprint: str  # changes exactly when the SQL signature changes
    input_names: list[str]
    output_names: list[str]
    comment: str
    input_types: list[str]  # SQL types, in input order

    def function(self, quote_ident: Any) -> str:
        return f"ml.{quote_ident(self.model)}({self.identity})"

    def row_function(self, quote_ident: Any) -> str:
        """The row form, ml.<model>(t): the inputs read from a record's columns, as in DuckDB."""
        return f"ml.{quote_ident(self.model)}(record)"

    def statements(self, quote_ident: Any, quote_literal: Any, result_type: str | None) -> list[str]:
        """CREATE TYPE (when `result_type` is new to this call), CREATE FUNCTION, COMMENT, grants."""
        ddl = []
        returns = self.returns
        if self.result_fields is not None:
            assert result_type is not None
            ddl.append(f"CREATE TYPE ml.{quote_ident(result_type)} AS ({self.result_fields})")
            returns = f"ml.{quote_ident(result_type)}"
        ddl.append(self.create_function(quote_ident, quote_literal, returns))
        ddl.append(self.create_row_function(quote_ident, quote_literal, returns))
        for function, comment in (
            (self.function(quote_ident), self.comment),
            (self.row_function(quote_ident), f"{self.comment} Row form: ml.{self.model}(t) reads the inputs "
             f"from t's columns ({', '.join(self.input_names)}); other columns are left out."),
        ):  # fmt: skip
            ddl.append(f"COMMENT ON FUNCTION {function} IS {quote_literal(comment)}")
            ddl.append(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
            ddl.append(f"GRANT EXECUTE ON FUNCTION {function} TO sqlml_user")
        return ddl

    def create_row_function(self, quote_ident: Any, quote_literal: Any, returns: str | None) -> str:
        names = ", ".join(quote_literal(n) for n in self.input_names)
        casts = ", ".join(
            f"(j ->> {quote_literal(n)})::{sql_type}"
            for n, sql_type in zip(self.input_names, self.input_types, strict=True)
        )
        hint = f"the row form reads the model's inputs from the row's columns: {', '.join(self.input_names)}"
        body = (
            "DECLARE\n    j jsonb := to_jsonb(features);\n"
            f"    missing text := (SELECT string_agg(c, ', ') FROM unnest(ARRAY[{names}]) AS c WHERE NOT j ? c);\n"
            "BEGIN\n    IF missing IS NOT NULL THEN\n"
            f"        RAISE EXCEPTION 'the row has no column % (an input of model {self.model})', missing\n"
            f"            USING ERRCODE = '22023', HINT = {quote_literal(hint)};\n"
            f"    END IF;\n    RETURN ml.{quote_ident(self.model)}({casts});\nEND"
        )
        return (
            f"CREATE FUNCTION ml.{quote_ident(self.model)}(features record) RETURNS {returns} LANGUAGE plpgsql "
            "VOLATILE STRICT PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp "
            f"AS {quote_literal(body)}"
        )

    def create_function(self, quote_ident: Any, quote_literal: Any, returns: str | None) -> str:
        body = (
            'if "sqlml" not in GD:\n    plpy.execute("SELECT ml._load_helper()")\n'
            f"return GD['sqlml'].predict_typed(plpy, {self.model!r}, {self.input_names!r}, "
            f"{self.output_names!r}, args)\n"
        )
        return (
            f"CREATE FUNCTION ml.{quote_ident(self.model)}({self.arguments}) RETURNS {returns} LANGUAGE plpython3u "
            "VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp "
            f"AS {quote_literal(body)}"
        )

    @property
    def ddl(self) -> list[str]:
        """The statements for a first sync (result type ml.<model>_result)."""
        return self.statements(_quote_ident, _quote_literal, f"{self.model}_result" if self.result_fields else None)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def function_ddl(quote_ident: Any, quote_literal: Any, entry: dict[str, Any]) -> GeneratedFunction | None:
    """The typed function `ml.<model>(<inputs>)` of a /v1/models entry, or None when the model has
    none (see sqlml/sql/spec.py; forecast models are served by ml.forecast())."""
    spec = spec_from_entry(entry)
    if spec is None or spec.is_table or spec.model in BUILTIN_MODEL_FUNCTIONS:
        return None
    return generated_function(quote_ident, spec)


def generated_function(quote_ident: Any, spec: FunctionSpec) -> GeneratedFunction:
    arguments = ", ".join(f"{quote_ident(c.name)} {c.postgres_type}" for c in spec.inputs)
    identity = ", ".join(c.postgres_type for c in spec.inputs)
    single = spec.single_output
    returns = single.postgres_type if single is not None else None
    fields = None if single else ", ".join(f"{quote_ident(c.name)} {c.postgres_type}" for c in spec.outputs)
    comment = (
        f"Score one row with model {spec.model} (version {spec.version}; generated by ml.sync()). "
        f"Returns {', '.join(spec.output_names)}. NULL in any input gives NULL."
        + (f" {spec.description}" if spec.description else "")
    )
    fingerprint = hashlib.sha256(f"{arguments}|{returns}|{fields}".encode()).hexdigest()[:12]
    return GeneratedFunction(
        spec.model,
        arguments,
        identity,
        returns,
        fields,
        fingerprint,
        spec.input_names,
        spec.output_names,
        comment,
        [c.postgres_type for c in spec.inputs],
    )


GENERATED_SQL = "SELECT model, identity, result_type, fingerprint FROM ml._generated"


def sync(plpy: Any, only: str | None = None) -> Iterator[tuple[str, str, str]]:
    """ml.sync() -> (model, function, action): create, update, keep or drop the generated functions.
    `only` limits it to one model (ml.deploy re-syncs the model it moved)."""
    entries = [e for e in _model_list(plpy) if only is None or e.get("name") == only]
    previous = {r["model"]: r for r in plpy.execute(GENERATED_SQL) if only is None or r["model"] == only}
    for entry in entries:
        model = entry.get("name")
        generated = function_ddl(plpy.quote_ident, plpy.quote_literal, entry)
        if generated is not None:
            yield _sync_one(plpy, generated, previous.pop(generated.model, None))
        elif entry.get("error") and model in previous:
            previous.pop(model)  # unreadable in the store now: keep what works, say why
            plpy.warning(f"sqlml: model {model!r} is unreadable in the store; its typed function is kept")
            yield model, f"ml.{model}({previous_identity(plpy, model)})", "kept (model unreadable)"
        elif model in RESERVED_FUNCTIONS or model in BUILTIN_MODEL_FUNCTIONS or entry.get("task") == "forecast":
            continue  # served by the built-in functions (ml.sentiment, ml.forecast)
        else:
            plpy.notice(f"sqlml: no typed function for model {model!r} (unsupported signature)")
    if only is None:
        for model, row in previous.items():  # gone from the bridge
            yield _drop_generated(plpy, model, row, "dropped")


def previous_identity(plpy: Any, model: str) -> str:
    rows = plpy.execute(
        _plan_typed(plpy, "SELECT identity FROM ml._generated WHERE model = $1", ["pg_catalog.text"]), [model]
    )
    return str(rows[0]["identity"]) if len(rows) else ""


def _sync_one(plpy: Any, generated: GeneratedFunction, previous: Any) -> tuple[str, str, str]:
    quote_ident, quote_literal = plpy.quote_ident, plpy.quote_literal
    model, label = generated.model, f"ml.{generated.model}({generated.arguments})"
    function = generated.function(quote_ident)
    row_function = generated.row_function(quote_ident)
    if (
        previous is not None
        and previous["fingerprint"] == generated.fingerprint
        and _exists(plpy, function)
        and _exists(plpy, row_function)
    ):
        plpy.execute(f"COMMENT ON FUNCTION {function} IS {quote_literal(generated.comment)}")
        return model, label, "unchanged"
    if previous is not None:
        dropped = _drop_generated(plpy, model, previous, "replaced")
        if dropped[2] != "replaced":
            return model, label, dropped[2]
    result_type = _result_type(plpy, generated) if generated.result_fields else None
    statements = generated.statements(quote_ident, quote_literal, result_type)
    if result_type is not None and _type_exists(plpy, result_type):
        statements = statements[1:]  # the type this signature already has
    for statement in statements:
        plpy.execute(statement)
    plpy.execute(
        _plan_typed(
            plpy,
            "INSERT INTO ml._generated (model, identity, result_type, fingerprint) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (model) DO UPDATE SET identity = EXCLUDED.identity, result_type = EXCLUDED.result_type, "
            "fingerprint = EXCLUDED.fingerprint, synced_at = pg_catalog.now()",
            ["pg_catalog.text", "pg_catalog.text", "pg_catalog.text", "pg_catalog.text"],
        ),
        [model, generated.identity, result_type, generated.fingerprint],
    )
    return model, label, "created" if previous is None else "updated"


def _result_type(plpy: Any, generated: GeneratedFunction) -> str:
    """The composite type for the outputs: ml.<model>_result when free (or already this shape),
    else one named after the signature, so a column of the old type keeps its type and data."""
    plain = f"{generated.model}_result"
    if not _type_exists(plpy, plain) or _type_fields(plpy, plain) == generated.result_fields:
        return plain  # free (an old shape of ours that nothing used was dropped), or this very shape
    return f"{generated.model}_result_{generated.fingerprint[:8]}"


def _drop_generated(plpy: Any, model: str, row: Any, action: str) -> tuple[str, str, str]:
    """Drop a generated function (and its result type, if nothing else uses it), never with CASCADE.
    A dependent view keeps the function: a WARNING names the dependents and what to do."""
    quote_ident = plpy.quote_ident
    functions = [f"ml.{quote_ident(model)}({row['identity']})", f"ml.{quote_ident(model)}(record)"]
    label = f"ml.{model}({row['identity']})"
    existing = [f for f in functions if _exists(plpy, f)]
    if existing:
        blocked = _try(plpy, f"DROP FUNCTION {', '.join(existing)}", report=True)
        if blocked is not True:
            plpy.warning(
                f"sqlml: {label} is kept: {blocked}",
                hint="drop or change the objects that use it, then run SELECT * FROM ml.sync() again",
            )
            return model, label, "kept (objects depend on it)"
    if row["result_type"]:
        _try(plpy, f"DROP TYPE IF EXISTS ml.{quote_ident(row['result_type'])}")  # kept while a column uses it
    plpy.execute(_plan_typed(plpy, "DELETE FROM ml._generated WHERE model = $1", ["pg_catalog.text"]), [model])
    return model, label, action


def _try(plpy: Any, statement: str, report: bool = False) -> Any:
    """Run one statement in a subtransaction: True, or False (with report: the error's detail)."""
    try:
        with plpy.subtransaction():
            plpy.execute(statement)
        return True
    except plpy.SPIError as exc:
        if not report:
            return False
        spidata = getattr(exc, "spidata", None) or ()
        detail = spidata[1] if len(spidata) > 1 and spidata[1] else ""
        return f"{exc.args[0] if exc.args else exc}: {detail}".strip(": ")


def _exists(plpy: Any, function: str) -> bool:
    plan = _plan_typed(plpy, "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL AS found", ["pg_catalog.text"])
    return bool(plpy.execute(plan, [function])[0]["found"])


def _type_exists(plpy: Any, type_name: str) -> bool:
    return _type_fields(plpy, type_name) is not None


def _type_fields(plpy: Any, type_name: str) -> str | None:
    """'"a" text, "b" double precision' of a composite type in schema ml, or None if there is none."""
    plan = _plan_typed(
        plpy,
        "SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname) OPERATOR(pg_catalog.||) ' ' "
        "OPERATOR(pg_catalog.||) pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) AS fields, "
        "pg_catalog.count(*) AS n FROM pg_catalog.pg_type t JOIN pg_catalog.pg_attribute a ON a.attrelid = t.typrelid "
        "WHERE t.typname = $1 AND t.typnamespace = 'ml'::pg_catalog.regnamespace AND a.attnum > 0 "
        "AND NOT a.attisdropped",
        ["pg_catalog.name"],
    )
    row = plpy.execute(plan, [type_name])[0]
    return None if not row["n"] else str(row["fields"])
