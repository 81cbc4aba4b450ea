"""Which `ml.*` functions the batching rewriter may replace, and with which batch function.

The rewriter (`sqlml.sql.rewrite`) only needs a small description of each per-row model
function: its name in schema `ml`, its arguments (name and SQL type, in order), its outputs and
the batch function that scores many rows at once. A `Catalog` holds those descriptions; it is
built by hand in tests, from the bridge's `GET /v1/models` entries, or read from PostgreSQL's
catalog (`pg_proc`) on a database with the sqlml extension. The typed functions follow the one
function spec (sqlml/sql/spec.py) that ml.sync() renders too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlml.sql.spec import spec_from_entry

# How a per-row function is batched:
#   sentiment: ml.sentiment(text) -> ml.sentiment_batch(text[]) (ord, SENTIMENT_FIELDS...)
#   predict:   ml.predict('model', features jsonb) -> ml.predict_batch('model', jsonb[]) (ord, result)
#   typed:     ml.<model>(a, b, ...) -> ml.predict_batch('<model>', jsonb_build_object('a', a, ...)[])
BatchKind = Literal["sentiment", "predict", "typed"]


@dataclass(frozen=True)
class SqlColumn:
    """One argument or output: its name and its SQL type as PostgreSQL spells it."""

    name: str
    sql_type: str


@dataclass(frozen=True)
class ModelFunction:
    """A per-row `ml.<name>(...)` function and how to batch it.

    `result_type` is the composite type the function returns (`ml.sentiment_result`) or None when
    it returns a scalar (the single output's type). `model` is the bridge model a typed function
    scores.
    """

    name: str
    kind: BatchKind
    inputs: tuple[SqlColumn, ...]
    outputs: tuple[SqlColumn, ...]
    result_type: str | None = None
    model: str | None = None
    strict: bool = True  # NULL in any input gives NULL (else the model scores NULL as missing)


SENTIMENT = ModelFunction(
    name="sentiment",
    kind="sentiment",
    inputs=(SqlColumn("text", "text"),),
    outputs=(SqlColumn("label", "text"), SqlColumn("confidence", "double precision")),
    result_type="ml.sentiment_result",
)
PREDICT = ModelFunction(
    name="predict",
    kind="predict",
    inputs=(SqlColumn("model", "text"), SqlColumn("features", "jsonb")),
    outputs=(SqlColumn("result", "jsonb"),),
)


@dataclass(frozen=True)
class Catalog:
    """The batchable `ml.*` functions of one database, by lower-case function name."""

    functions: Mapping[str, ModelFunction] = field(default_factory=dict)
    schema: str = "ml"

    def lookup(self, name: str) -> ModelFunction | None:
        return self.functions.get(name.lower())

    @classmethod
    def of(cls, *functions: ModelFunction) -> Catalog:
        return cls({f.name.lower(): f for f in functions})

    @classmethod
    def builtin(cls) -> Catalog:
        """What every database with the extension offers: ml.sentiment and ml.predict."""
        return cls.of(SENTIMENT, PREDICT)

    @classmethod
    def from_models(cls, entries: Iterable[Mapping[str, Any]]) -> Catalog:
        """The built-ins plus one typed function per bridge model, by the rules of `ml.sync()`."""
        typed = [f for f in (typed_function_from_model(e) for e in entries) if f is not None]
        return cls.of(SENTIMENT, PREDICT, *typed)

    @classmethod
    def from_connection(cls, connection: Any) -> Catalog:
        """Read the extension's functions from PostgreSQL's catalog (a DB-API/psycopg connection).

        An empty catalog when the database has no sqlml extension: nothing is then rewritten.
        """
        with connection.cursor() as cursor:
            cursor.execute(_BATCH_FUNCTIONS_SQL)
            present = {str(row[0]) for row in cursor.fetchall()}
            if not present:
                return cls()
            builtins = [
                f
                for f, batch in ((SENTIMENT, "sentiment_batch"), (PREDICT, "predict_batch"))
                if {f.name, batch} <= present
            ]
            typed: list[ModelFunction] = []
            if "predict_batch" in present and "_generated" in present:
                cursor.execute(_TYPED_FUNCTIONS_SQL)
                typed = [f for f in (typed_function_from_row(r) for r in cursor.fetchall()) if f is not None]
        return cls.of(*builtins, *typed)


def typed_function_from_model(entry: Mapping[str, Any]) -> ModelFunction | None:
    """The typed function `ml.sync()` creates for one `/v1/models` entry, or None (as ml.sync skips it)."""
    spec = spec_from_entry(entry)
    if spec is None or not spec.generated_on_postgres:
        return None
    return ModelFunction(
        name=spec.model,
        kind="typed",
        inputs=tuple(SqlColumn(c.name, c.postgres_type) for c in spec.inputs),
        outputs=tuple(SqlColumn(c.name, c.postgres_type) for c in spec.outputs),
        result_type=f"ml.{spec.model}_result" if spec.single_output is None else None,
        model=spec.model,
        strict=spec.strict,
    )


def typed_function_from_row(row: tuple[Any, ...]) -> ModelFunction | None:
    """One row of `_TYPED_FUNCTIONS_SQL` as a ModelFunction (None when it cannot be understood)."""
    name, arg_names, arg_types, return_type, is_composite, field_names, field_types, source, strict = row
    if not arg_names or len(arg_names) != len(arg_types):
        return None
    inputs = tuple(SqlColumn(str(n), str(t)) for n, t in zip(arg_names, arg_types, strict=True))
    if is_composite:
        outputs = tuple(SqlColumn(str(n), str(t)) for n, t in zip(field_names, field_types, strict=True))
        result_type: str | None = str(return_type)
    else:
        output_name = _single_output_name(str(source or ""))
        if output_name is None:
            return None
        outputs, result_type = (SqlColumn(output_name, str(return_type)),), None
    return ModelFunction(str(name), "typed", inputs, outputs, result_type, model=str(name), strict=bool(strict))


def _single_output_name(source: str) -> str | None:
    """The output name of a generated function, read from its PL/Python body
    `return GD['sqlml'].predict_typed(plpy, 'model', [inputs], ['output'], args)` (ml.sync's code)."""
    for line in source.splitlines():
        start = line.find("predict_typed(")
        if start < 0:
            continue
        try:
            call = ast.parse(line[start:].strip(), mode="eval").body
        except SyntaxError:
            return None
        if isinstance(call, ast.Call) and len(call.args) >= 4:
            try:
                outputs = ast.literal_eval(call.args[3])
            except ValueError:
                return None
            if isinstance(outputs, list) and len(outputs) == 1 and isinstance(outputs[0], str):
                return outputs[0]
    return None


_BATCH_FUNCTIONS_SQL = """
SELECT p.proname FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'ml' AND p.proname IN ('sentiment', 'sentiment_batch', 'predict', 'predict_batch')
UNION ALL
SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'ml' AND c.relname = '_generated'
"""

# The functions ml.sync() generated: argument names and types, return type and, for a composite,
# its fields; the body names the single output of a scalar function.
_TYPED_FUNCTIONS_SQL = """
SELECT p.proname,
       p.proargnames,
       ARRAY(SELECT pg_catalog.format_type(a.t, NULL)
             FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, n) ORDER BY a.n),
       pg_catalog.format_type(p.prorettype, NULL),
       t.typtype = 'c',
       ARRAY(SELECT att.attname::text FROM pg_catalog.pg_attribute att
             WHERE att.attrelid = t.typrelid AND att.attnum > 0 AND NOT att.attisdropped ORDER BY att.attnum),
       ARRAY(SELECT pg_catalog.format_type(att.atttypid, att.atttypmod) FROM pg_catalog.pg_attribute att
             WHERE att.attrelid = t.typrelid AND att.attnum > 0 AND NOT att.attisdropped ORDER BY att.attnum),
       p.prosrc,
       p.proisstrict
FROM ml._generated g
JOIN pg_catalog.pg_proc p ON p.proname = g.model
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace AND n.nspname = 'ml'
JOIN pg_catalog.pg_type t ON t.oid = p.prorettype
WHERE NOT p.proretset
  AND NOT 'pg_catalog.record'::pg_catalog.regtype = ANY (p.proargtypes::oid[])  -- the row form, ml.<model>(t)
ORDER BY p.proname
"""
