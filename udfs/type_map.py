"""How signature column types map onto DuckDB: accepted argument types, and the SQL of a result.

The typed per-model macros check each argument's DuckDB type at bind time (`typeof()` folds to a
constant, so the check costs nothing per row) and cast it to the signature type; the lists here
say which argument types a column accepts without an explicit CAST.
"""

from __future__ import annotations

from duckdb.sqltypes import DuckDBPyType

from sqlml.sql.spec import FunctionSpec, SpecColumn

_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
_NULL = '"NULL"'  # what typeof(NULL) returns

# DuckDB argument types (as `typeof()` prints them) each signature type accepts; a DECIMAL of any
# width also counts as a number.
ACCEPTED: dict[str, tuple[str, ...]] = {
    "text": ("VARCHAR", _NULL),
    "double": (*_INTEGERS, "UHUGEINT", "FLOAT", "DOUBLE", _NULL),
    "bigint": (*_INTEGERS, _NULL),
    "boolean": ("BOOLEAN", _NULL),
    "timestamp": (
        "TIMESTAMP",
        "TIMESTAMP_S",
        "TIMESTAMP_MS",
        "TIMESTAMP_NS",
        "TIMESTAMP WITH TIME ZONE",
        "DATE",
        _NULL,
    ),
}


def duckdb_type(column: SpecColumn) -> DuckDBPyType:
    return DuckDBPyType(column.duckdb_type)


def result_sql_type(spec: FunctionSpec) -> str:
    """The one output's type, else a STRUCT of all outputs."""
    single = spec.single_output
    if single is not None:
        return single.duckdb_type
    return "STRUCT(" + ", ".join(f"{quote_ident(c.name)} {c.duckdb_type}" for c in spec.outputs) + ")"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
