"""The `sqlml.*` settings in effect for a call, and the bridge token of the login role.

Settings are read with each call (session, role or database level, checked); the token is read from
sqlml_private.bridge_tokens, cached a few seconds per role, and attached only when the session's
bridge URL is the one stored with it. A role with per-model grants (ml.grant) gets the default token
narrowed to those models, derived here as the bridge would derive it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlml.sql.sentiment import SENTIMENT_MODEL

from .plpy_api import Plpy, prepared
from .sql_errors import BridgeError

DEFAULT_BRIDGE_URL = "http://127.0.0.1:8765"
# Long enough for a cold model load on the documented 2-core machine (MiniLM measured 5.5-9.5 s to
# its first answer), the bridge's own request timeout (30 s), and its "still loading" answer.
DEFAULT_TIMEOUT_MS = 30_000
# The bridge's default per-request row limit (its max_request_rows): a larger sqlml.batch_size
# would only earn 413s.
MAX_BATCH_SIZE = 100_000
TOKEN_CACHE_SECONDS = 5.0


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
    statement: str = ""  # when the client's statement started: identifies it for once_per_statement


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


@dataclass(frozen=True)
class Credential:
    """A bearer token and the one bridge URL it may be sent to."""

    token: str
    bridge_url: str


_token_cache: dict[str, tuple[float, Credential | None]] = {}


def read_settings(plpy: Plpy, with_token: bool = True) -> Settings:
    """The `sqlml.*` settings in effect now (session, role or database), checked.

    The token is attached only when this session's bridge URL is the one stored with it: a role that
    may change `sqlml.bridge_url` can point its own calls elsewhere, but never the token."""
    row = plpy.execute(prepared(plpy, SETTINGS_SQL))[0]
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
    model = row["sentiment_model"] or SENTIMENT_MODEL
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


def _credential(plpy: Plpy, login: str) -> Credential | None:
    """The token for the login role, cached for a few seconds per role (one query per row else)."""
    cached = _token_cache.get(login)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    credential = choose_credential(list(plpy.execute(prepared(plpy, TOKEN_SQL))), login)
    _token_cache[login] = (time.monotonic() + TOKEN_CACHE_SECONDS, credential)
    return credential


def choose_credential(rows: Sequence[dict[str, Any]], login: str) -> Credential | None:
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


def forget_credentials() -> None:
    """Drop the cached tokens of every role (see tokens.forget_token)."""
    _token_cache.clear()
