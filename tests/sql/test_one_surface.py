"""One function spec, three renderings: the PostgreSQL helper's ml.sync() DDL, the DuckDB macros and
the rewriter's catalogue must give every model the same function, or the same absence of one.

The models are real store entries (a registry with the fake runtimes), listed as the bridge lists
them, plus models whose names schema ml already uses; DuckDB's side is read back from a real
connection's `duckdb_functions()`, the PostgreSQL side from the helper exactly as the extension
ships it (extension/build_helper.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, get_args

import duckdb
import pytest

from sqlml.bridge.client import LocalClient
from sqlml.bridge.manifest import ColumnType
from sqlml.bridge.registry import Registry
from sqlml.sql.catalog import Catalog, typed_function_from_model
from sqlml.sql.reserved import BUILTIN_MODEL_FUNCTIONS, RESERVED_FUNCTIONS
from sqlml.sql.sentiment import SENTIMENT_MODEL
from sqlml.sql.spec import FORECAST_ARGUMENTS, function_spec, spec_from_entry
from sqlml.sql.types import DUCKDB_TYPES, POSTGRES_TYPES, SIGNATURE_TYPES
from sqlml.udfs import macros, register
from tests.udfs.fakes import MANIFESTS, publish_fakes

sys.path.insert(0, str(Path(__file__).parents[2] / "extension" / "tests"))
from built_helper import built_helper

helper = built_helper("sqlml_pg_surface")

# Models named like functions schema ml defines on one engine or the other.
SQUATTERS = ("sync", "predict", "models", "grant")


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@pytest.fixture
def client(tmp_path: Path) -> LocalClient:
    registry = Registry(tmp_path / "store")
    publish_fakes(registry, tmp_path)
    for name in SQUATTERS:
        registry.publish(MANIFESTS["adder"].model_copy(update={"name": name}), tmp_path / "empty-artifact")
    return LocalClient(registry)


def _duckdb_macros(con: duckdb.DuckDBPyConnection) -> dict[str, list[list[str]]]:
    rows = con.sql(
        "SELECT function_name, parameters FROM duckdb_functions() WHERE database_name = 'ml' "
        "AND function_type IN ('macro', 'table_macro')"
    ).fetchall()
    found: dict[str, list[list[str]]] = {}
    for name, parameters in rows:
        found.setdefault(name, []).append(list(parameters))
    return found


def test_the_signature_types_are_the_types_both_engines_map() -> None:
    assert set(get_args(ColumnType)) == set(SIGNATURE_TYPES) == set(POSTGRES_TYPES) == set(DUCKDB_TYPES)


def test_every_model_gets_the_same_function_on_every_surface(client: LocalClient) -> None:
    entries = client.models()
    con = duckdb.connect()
    register(con, client)
    duckdb_macros = _duckdb_macros(con)
    catalog = Catalog.from_models(entries)
    checked = 0
    for entry in entries:
        name = entry["name"]
        spec = spec_from_entry(entry)
        pg = helper.function_ddl(_quote_ident, _quote_literal, entry)
        typed = typed_function_from_model(entry)
        if spec is None:  # a name schema ml uses: no function of its own anywhere
            assert name in RESERVED_FUNCTIONS
            assert pg is None and typed is None
            assert catalog.lookup(name) is None or catalog.lookup(name).kind != "typed"  # type: ignore[union-attr]
            assert name in macros.GENERIC_MACROS or name not in duckdb_macros
            continue
        checked += 1
        if spec.is_table:  # a forecast: DuckDB's table macro; PostgreSQL and the rewriter use ml.forecast()
            assert pg is None and typed is None
            assert duckdb_macros[name] == [list(FORECAST_ARGUMENTS)]
            continue
        expected = [[c.name for c in spec.inputs]] + ([["row"]] if len(spec.inputs) > 1 else [])
        if name == SENTIMENT_MODEL and len(spec.inputs) == 1:  # and Aurora's (text, language) form
            expected.append([spec.inputs[0].name, "language"])
        assert sorted(duckdb_macros[name]) == sorted(expected)
        if name in BUILTIN_MODEL_FUNCTIONS:  # PostgreSQL defines ml.sentiment itself
            assert pg is None and typed is None and catalog.lookup(name) is not None
            continue
        assert pg is not None and typed is not None
        assert pg.input_names == [c.name for c in typed.inputs] == spec.input_names
        assert pg.input_types == [c.sql_type for c in typed.inputs] == [c.postgres_type for c in spec.inputs]
        assert pg.output_names == [c.name for c in typed.outputs] == spec.output_names
    assert checked == len(MANIFESTS)


def test_duckdb_defines_no_name_outside_the_models_and_the_reserved_list(client: LocalClient) -> None:
    con = duckdb.connect()
    register(con, client)
    model_names = {e["name"] for e in client.models()} - RESERVED_FUNCTIONS
    defined = set(_duckdb_macros(con))
    assert set(macros.GENERIC_MACROS) <= RESERVED_FUNCTIONS
    assert defined - model_names <= RESERVED_FUNCTIONS, defined - model_names


@pytest.mark.parametrize(
    ("name", "task", "inputs", "why"),
    [
        ("sync", "regression", [{"name": "x", "type": "double"}], "reserved"),
        ("Lead", "regression", [{"name": "x", "type": "double"}], "not a model name"),
        ("lead\n", "regression", [{"name": "x", "type": "double"}], "trailing newline"),
        ("_lead", "regression", [{"name": "x", "type": "double"}], "leading underscore"),
        ("lead", "regression", [{"name": 'x") RETURNS int AS $$;', "type": "double"}], "column name"),
        ("lead", "regression", [{"name": "x", "type": "blob"}], "unknown type"),
        ("lead", "regression", [], "no inputs"),
    ],
)
def test_a_model_the_spec_refuses_gets_no_function(name: str, task: str, inputs: list[Any], why: str) -> None:
    assert function_spec(name, task, inputs, [{"name": "y", "type": "double"}]) is None, why


def test_unreadable_or_malformed_entries_get_no_spec() -> None:
    column = {"name": "x", "type": "double"}
    good = {"name": "lead", "task": "regression", "signature": {"inputs": [column], "outputs": [column]}}
    assert spec_from_entry(good) is not None
    assert spec_from_entry({**good, "error": "store_corrupt"}) is None
    assert spec_from_entry({**good, "signature": "inputs"}) is None
    assert spec_from_entry({**good, "signature": {"inputs": ["x"], "outputs": []}}) is None
