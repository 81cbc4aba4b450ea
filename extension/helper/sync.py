"""ml.sync(): create, update, keep or drop the typed per-model functions (function_ddl.py).

ml.sync() never drops what a user made, and never uses CASCADE. An unchanged signature is left alone
(only the function's comment follows the version). A changed one replaces the generated function
only when nothing depends on it; when a view does, the old function stays, and a WARNING names the
dependents and what to do. A result type that a table column uses is never dropped: the new
signature gets a type of its own (ml.<model>_result_<fingerprint>). ml._generated records what was
generated, so that nothing else is ever dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlml.sql.reserved import RESERVED_FUNCTIONS
from sqlml.sql.spec import spec_from_entry

from .function_ddl import GeneratedFunction, function_ddl
from .plpy_api import Plpy, prepared
from .sql_function import SqlCall, bridge_function

GENERATED_SQL = "SELECT model, identity, result_type, fingerprint FROM ml._generated"


@bridge_function
def sync(call: SqlCall, only: str | None = None) -> Iterator[tuple[str, str, str]]:
    """ml.sync() -> (model, function, action): create, update, keep or drop the generated functions.
    `only` limits it to one model (ml.deploy re-syncs the model it moved)."""
    plpy = call.plpy
    entries = [e for e in call.bridge.models() if only is None or e.get("name") == only]
    previous = {r["model"]: r for r in plpy.execute(GENERATED_SQL) if only is None or r["model"] == only}
    for entry in entries:
        model = entry.get("name")
        generated = function_ddl(plpy.quote_ident, plpy.quote_literal, entry)
        if generated is not None:
            yield _sync_one(plpy, generated, previous.pop(generated.model, None))
        elif entry.get("error") and isinstance(model, str) and model in previous:
            previous.pop(model)  # unreadable in the store now: keep what works, say why
            plpy.warning(f"sqlml: model {model!r} is unreadable in the store; its typed function is kept")
            yield model, f"ml.{model}({previous_identity(plpy, model)})", "kept (model unreadable)"
        elif model in RESERVED_FUNCTIONS or _served_by_builtin(entry):
            continue  # served by the built-in functions (ml.sentiment, ml.forecast)
        else:
            plpy.notice(f"sqlml: no typed function for model {model!r} (unsupported signature)")
    if only is None:
        for model, row in previous.items():  # gone from the bridge
            yield _drop_generated(plpy, model, row, "dropped")


def _served_by_builtin(entry: dict[str, Any]) -> bool:
    spec = spec_from_entry(entry)
    return spec is not None and not spec.generated_on_postgres


def previous_identity(plpy: Plpy, model: str) -> str:
    rows = plpy.execute(
        prepared(plpy, "SELECT identity FROM ml._generated WHERE model = $1", ["pg_catalog.text"]), [model]
    )
    return str(rows[0]["identity"]) if len(rows) else ""


def _sync_one(plpy: Plpy, generated: GeneratedFunction, previous: dict[str, Any] | None) -> tuple[str, str, str]:
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
        prepared(
            plpy,
            "INSERT INTO ml._generated (model, identity, result_type, fingerprint) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (model) DO UPDATE SET identity = EXCLUDED.identity, result_type = EXCLUDED.result_type, "
            "fingerprint = EXCLUDED.fingerprint, synced_at = pg_catalog.now()",
            ["pg_catalog.text", "pg_catalog.text", "pg_catalog.text", "pg_catalog.text"],
        ),
        [model, generated.identity, result_type, generated.fingerprint],
    )
    return model, label, "created" if previous is None else "updated"


def _result_type(plpy: Plpy, generated: GeneratedFunction) -> str:
    """The composite type for the outputs: ml.<model>_result when free (or already this shape),
    else one named after the signature, so a column of the old type keeps its type and data."""
    plain = f"{generated.model}_result"
    if not _type_exists(plpy, plain) or _type_fields(plpy, plain) == generated.result_fields:
        return plain  # free (an old shape of ours that nothing used was dropped), or this very shape
    return f"{generated.model}_result_{generated.fingerprint[:8]}"


def _drop_generated(plpy: Plpy, model: str, row: dict[str, Any], action: str) -> tuple[str, str, str]:
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
    plpy.execute(prepared(plpy, "DELETE FROM ml._generated WHERE model = $1", ["pg_catalog.text"]), [model])
    return model, label, action


def _try(plpy: Plpy, statement: str, report: bool = False) -> bool | str:
    """Run one statement in a subtransaction: True, or False (with report: the error's detail)."""
    try:
        with plpy.subtransaction():
            plpy.execute(statement)
        return True
    except plpy.SPIError as exc:
        if not report:
            return False
        spidata: Sequence[Any] = getattr(exc, "spidata", None) or ()
        detail = spidata[1] if len(spidata) > 1 and spidata[1] else ""
        return f"{exc.args[0] if exc.args else exc}: {detail}".strip(": ")


def _exists(plpy: Plpy, function: str) -> bool:
    plan = prepared(plpy, "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL AS found", ["pg_catalog.text"])
    return bool(plpy.execute(plan, [function])[0]["found"])


def _type_exists(plpy: Plpy, type_name: str) -> bool:
    return _type_fields(plpy, type_name) is not None


def _type_fields(plpy: Plpy, type_name: str) -> str | None:
    """'"a" text, "b" double precision' of a composite type in schema ml, or None if there is none."""
    plan = prepared(
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
