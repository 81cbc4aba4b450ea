"""The generated SQL of the typed macros, executed on a bare DuckDB (no models needed)."""

from __future__ import annotations

import duckdb
import pytest

from sqlml.sql.spec import FunctionSpec, SpecColumn, function_spec
from sqlml.udfs import macros
from sqlml.udfs.type_map import result_sql_type
from tests.udfs.fakes import MANIFESTS


def spec_of(name: str, model: str | None = None) -> FunctionSpec | None:
    manifest = MANIFESTS[name]
    signature = manifest.signature.model_dump()
    return function_spec(model or name, manifest.task, signature["inputs"], signature["outputs"])


def test_typed_macro_has_column_and_struct_forms() -> None:
    spec = spec_of("adder")
    assert spec is not None
    sql = macros.model_macro(spec)
    assert sql.startswith('CREATE OR REPLACE MACRO ml.main."adder"("a", "b", "c") AS __sqlml_predict_adder(')
    assert "struct_extract(\"row\", 'c')" in sql


def test_single_input_model_has_no_struct_form() -> None:
    spec = spec_of("sentiment")
    assert spec is not None and '("row")' not in macros.model_macro(spec)


def test_forecast_models_get_a_table_macro_and_reserved_names_none() -> None:
    forecast = spec_of("power")
    assert forecast is not None and "AS TABLE" in macros.model_macro(forecast)
    assert spec_of("adder", model="predict") is None


def test_output_types_follow_the_signature() -> None:
    adder, sentiment = spec_of("adder"), spec_of("sentiment")
    assert adder is not None and sentiment is not None
    assert result_sql_type(adder) == "DOUBLE"
    assert result_sql_type(sentiment) == 'STRUCT("label" VARCHAR, "confidence" DOUBLE)'


@pytest.mark.parametrize(
    ("column_type", "argument", "ok"),
    [
        ("bigint", "42::INTEGER", True),
        ("bigint", "4.5::DOUBLE", False),
        ("double", "4.5", True),  # a DECIMAL literal counts as a number
        ("double", "'4.5'", False),
        ("text", "'x'", True),
        ("text", "1", False),
        ("boolean", "true", True),
        ("timestamp", "DATE '2024-01-02'", True),
        ("timestamp", "'2024-01-02'::VARCHAR", False),
        ("bigint", "NULL", True),
    ],
)
def test_checked_argument_accepts_fitting_types_and_names_the_column(column_type: str, argument: str, ok: bool) -> None:
    expression = macros.checked_argument(argument, SpecColumn("feature_x", column_type), "m")
    con = duckdb.connect()
    if ok:
        con.sql(f"SELECT {expression}").fetchall()
    else:
        with pytest.raises(duckdb.Error, match='column "feature_x" of model "m" must be'):
            con.sql(f"SELECT {expression}").fetchall()
