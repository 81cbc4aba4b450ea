"""Bridge tokens and per-model grants: ml.set_token(), ml.grant() and ml.revoke().

Tokens live in sqlml_private.bridge_tokens, each bound to one bridge URL; grants in
sqlml_private.model_grants narrow the default token to the granted models (settings.py reads both).
"""

from __future__ import annotations

import re

from .bridge_http import quote_model
from .model_names import check_plain_name
from .plpy_api import Plpy, prepared
from .row_scoring import forget_results
from .settings import forget_credentials, normalize_url, read_settings
from .sql_errors import BridgeError
from .sql_function import SqlCall, sql_function

TOKEN_TEXT = re.compile(r"[\x21-\x7e]{1,4096}\Z")
ROLE_OID_SQL = "SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $1"


def forget_token() -> None:
    """Called by ml.set_token(), ml.grant() and ml.revoke() so this session sees the change at once
    (others within TOKEN_CACHE_SECONDS)."""
    forget_credentials()
    forget_results()


def _role_oid(plpy: Plpy, role_name: str) -> int:
    found = plpy.execute(prepared(plpy, ROLE_OID_SQL, ["pg_catalog.name"]), [role_name])
    if not len(found):
        raise BridgeError("not_found", f"role {role_name!r} does not exist")
    return int(found[0]["oid"])


@sql_function
def set_token(call: SqlCall, token: str | None, role_name: str | None, bridge_url: str | None) -> None:
    """ml.set_token(token, role_name, bridge_url): store (or with a NULL token remove) the token of a
    role (NULL: the default for every role), bound to one bridge URL: the one given, else this
    session's sqlml.bridge_url, else the default. The token is never sent anywhere else."""
    plpy = call.plpy
    role_oid = 0 if role_name is None else _role_oid(plpy, role_name)
    who = "every role without a token of its own" if role_name is None else f"role {role_name}"
    if token is None:
        plpy.execute(
            prepared(plpy, "DELETE FROM sqlml_private.bridge_tokens WHERE role_oid = $1", ["pg_catalog.oid"]),
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
            prepared(
                plpy,
                "INSERT INTO sqlml_private.bridge_tokens (role_oid, token, bridge_url) VALUES ($1, $2, $3) "
                "ON CONFLICT (role_oid) DO UPDATE SET token = EXCLUDED.token, bridge_url = EXCLUDED.bridge_url,"
                " updated_at = pg_catalog.now()",
                ["pg_catalog.oid", "pg_catalog.text", "pg_catalog.text"],
            ),
            [role_oid, token, url],
        )
        plpy.notice(f"sqlml: the bridge token of {who} is sent only to {url}")
    forget_token()


@sql_function
def grant(call: SqlCall, model: str, role_name: str) -> None:
    """ml.grant(model, role): the role (and its members) may score `model`. A role with grants scores
    with the default token narrowed to its granted models (a derived token the bridge checks), so it
    cannot score any other model."""
    plpy = call.plpy
    check_plain_name(model)
    role_oid = _role_oid(plpy, role_name)
    call.bridge.call("GET", f"/v1/models/{quote_model(model)}")  # a typo fails here, with close names
    plpy.execute(
        prepared(
            plpy,
            "INSERT INTO sqlml_private.model_grants (model, role_oid) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            ["pg_catalog.text", "pg_catalog.oid"],
        ),
        [model, role_oid],
    )
    if not len(plpy.execute(prepared(plpy, "SELECT 1 FROM sqlml_private.bridge_tokens WHERE role_oid = 0"))):
        plpy.warning(
            "sqlml: grants narrow the default bridge token, and none is stored",
            hint="the extension owner stores one with SELECT ml.set_token('<token>')",
        )
    forget_token()


@sql_function
def revoke(call: SqlCall, model: str, role_name: str) -> None:
    """ml.revoke(model, role): undo ml.grant."""
    plpy = call.plpy
    check_plain_name(model)
    removed = plpy.execute(
        prepared(
            plpy,
            "DELETE FROM sqlml_private.model_grants WHERE model = $1 AND role_oid = $2 RETURNING model",
            ["pg_catalog.text", "pg_catalog.oid"],
        ),
        [model, _role_oid(plpy, role_name)],
    )
    if not len(removed):
        plpy.notice(f"sqlml: role {role_name} had no grant of model {model}")
    forget_token()
