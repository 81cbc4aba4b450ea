"""How signature column types map onto DuckDB: SQL type names, accepted argument types, Arrow types.

The typed per-model macros check each argument's DuckDB type at bind time (`typeof()` folds to a
constant, so the check costs nothing per row) and cast it to the signature type; the lists here
say which argument types a column accepts without an explicit CAST.
"""

from __future__ import annotations

from duckdb.sqltypes import DuckDBPyType

from sqlml.bridge.manifest import Column, ColumnType, Signature

SQL_TYPES: dict[str, str] = {
    "text": "VARCHAR",
    "double": "DOUBLE",
    "bigint": "BIGINT",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP",
}

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


def sql_type(column_type: ColumnType) -> str:
    return SQL_TYPES[column_type]


def duckdb_type(column_type: ColumnType) -> DuckDBPyType:
    return DuckDBPyType(SQL_TYPES[column_type])


def output_sql_type(signature: Signature) -> str:
    """DOUBLE (or the one output's type) for one output, else a STRUCT of all outputs."""
    outputs = signature.outputs
    if len(outputs) == 1:
        return sql_type(outputs[0].type)
    return struct_sql_type(outputs)


def struct_sql_type(columns: list[Column]) -> str:
    return "STRUCT(" + ", ".join(f"{quote_ident(c.name)} {sql_type(c.type)}" for c in columns) + ")"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
