"""The DDL of the typed per-model functions that ml.sync() creates, rendered from the model's
`FunctionSpec` (sqlml/sql/spec.py), the one spec the DuckDB macros and the rewriter render too.

For a model `m` with inputs `x bigint, y text`: `ml.m(x bigint, y text)`, a PL/Python function that
calls `predict_typed` (row_scoring.py), and its row form `ml.m(t record)`, which reads the inputs
from a row's columns. Several outputs make a composite result type, `ml.m_result`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlml.sql.spec import FunctionSpec, spec_from_entry

Quote = Callable[[str], str]  # plpy.quote_ident or plpy.quote_literal


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
    strict: bool = True  # False: the model scores NULL inputs as missing values, so they reach it

    def function(self, quote_ident: Quote) -> str:
        return f"ml.{quote_ident(self.model)}({self.identity})"

    def row_function(self, quote_ident: Quote) -> str:
        """The row form, ml.<model>(t): the inputs read from a record's columns, as in DuckDB."""
        return f"ml.{quote_ident(self.model)}(record)"

    def statements(self, quote_ident: Quote, quote_literal: Quote, result_type: str | None) -> list[str]:
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

    def create_row_function(self, quote_ident: Quote, quote_literal: Quote, returns: str | None) -> str:
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

    def create_function(self, quote_ident: Quote, quote_literal: Quote, returns: str | None) -> str:
        body = (
            'if "sqlml" not in GD:\n    plpy.execute("SELECT ml._load_helper()")\n'
            f"return GD['sqlml'].predict_typed(plpy, {self.model!r}, {self.input_names!r}, "
            f"{self.output_names!r}, args)\n"
        )
        return (
            f"CREATE FUNCTION ml.{quote_ident(self.model)}({self.arguments}) RETURNS {returns} LANGUAGE plpython3u "
            f"VOLATILE {'STRICT ' if self.strict else ''}PARALLEL UNSAFE SECURITY DEFINER "
            "SET search_path = pg_catalog, pg_temp "
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


def function_ddl(quote_ident: Quote, quote_literal: Quote, entry: dict[str, Any]) -> GeneratedFunction | None:
    """The typed function `ml.<model>(<inputs>)` of a /v1/models entry, or None when the model has
    none (see sqlml/sql/spec.py; forecast models are served by ml.forecast())."""
    spec = spec_from_entry(entry)
    if spec is None or not spec.generated_on_postgres:
        return None
    return generated_function(quote_ident, spec)


def generated_function(quote_ident: Quote, spec: FunctionSpec) -> GeneratedFunction:
    arguments = ", ".join(f"{quote_ident(c.name)} {c.postgres_type}" for c in spec.inputs)
    identity = ", ".join(c.postgres_type for c in spec.inputs)
    single = spec.single_output
    returns = single.postgres_type if single is not None else None
    fields = None if single else ", ".join(f"{quote_ident(c.name)} {c.postgres_type}" for c in spec.outputs)
    comment = (
        f"Score one row with model {spec.model} (version {spec.version}; generated by ml.sync()). "
        f"Returns {', '.join(spec.output_names)}. "
        + ("NULL in any input gives NULL." if spec.strict else "A NULL input is a missing value the model scores.")
        + (f" {spec.description}" if spec.description else "")
    )
    # strict functions keep the fingerprints they had before nullable inputs existed
    nulls = "" if spec.strict else "|nulls scored"
    fingerprint = hashlib.sha256(f"{arguments}|{returns}|{fields}{nulls}".encode()).hexdigest()[:12]
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
        spec.strict,
    )
