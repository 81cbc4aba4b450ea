"""The model lifecycle in SQL: ml.models(), ml.health(), ml.deploy() and ml.rollback()."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .bridge_http import quote_model
from .model_names import check_alias, check_model
from .plpy_api import prepared
from .row_scoring import forget_results
from .sql_function import SqlCall, bridge_function, sql_function
from .sync import previous_identity, sync

GRANTEES_SQL = """
SELECT g.model, pg_catalog.array_agg(r.rolname::pg_catalog.text ORDER BY r.rolname) AS roles
  FROM sqlml_private.model_grants g JOIN pg_catalog.pg_roles r ON r.oid = g.role_oid
 GROUP BY g.model
"""


@sql_function
def models(call: SqlCall) -> Iterator[dict[str, Any]]:
    """ml.models(): one row per model the bridge serves, with the roles granted it (ml.grant)."""
    grantees = {row["model"]: list(row["roles"]) for row in call.plpy.execute(prepared(call.plpy, GRANTEES_SQL))}
    for entry in call.bridge.models():
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


@bridge_function
def health(call: SqlCall) -> str:
    """ml.health(): the bridge's /readyz answer, or an error saying why it is not ready."""
    return json.dumps(call.bridge.call("GET", "/readyz"))


@bridge_function
def deploy(call: SqlCall, model: str, version: int, alias: str) -> str:
    """ml.deploy(model, version, alias): point the alias at the version (PUT aliases route)."""
    forget_results()
    check_model(model)
    check_alias(alias)
    path = f"/v1/models/{quote_model(model)}/aliases/{quote_model(alias)}"
    answer = call.bridge.call("PUT", path, {"version": int(version)})
    if alias == "production" and previous_identity(call.plpy, model):
        # the typed function serves production: a version with other inputs or outputs re-syncs it
        for _model, function, action in sync(call.plpy, only=model):
            if action != "unchanged":
                call.plpy.notice(f"sqlml: version {version} of {model} has another signature: {function} {action}")
    return json.dumps(answer)


@bridge_function
def rollback(call: SqlCall, model: str, alias: str) -> int | None:
    """ml.rollback(model, alias): move the alias back to its previous version; returns it."""
    forget_results()
    check_model(model)
    check_alias(alias)
    answer = call.bridge.call("POST", f"/v1/models/{quote_model(model)}/rollback", {"alias": alias}, idempotent=False)
    return answer.get("version") if isinstance(answer, dict) else None
