"""The generated SQL of the typed macros, executed on a bare DuckDB (no models needed)."""

from __future__ import annotations

import duckdb
import pytest

from sqlml.udfs import macros
from sqlml.udfs.type_map import output_sql_type
from tests.udfs.fakes import MANIFESTS


def test_typed_macro_has_column_and_struct_forms() -> None:
    sql = macros.model_macro("adder", "regression", MANIFESTS["adder"].signature)
    assert sql is not None
    assert sql.startswith('CREATE OR REPLACE MACRO ml.main."adder"("a", "b", "c") AS __sqlml_predict_adder(')
    assert "struct_extract(\"row\", 'c')" in sql


def test_single_input_model_has_no_struct_form() -> None:
    sql = macros.model_macro("sentiment", "sentiment", MANIFESTS["sentiment"].signature)
    assert sql is not None and '("row")' not in sql


def test_forecast_models_get_a_table_macro_and_reserved_names_none() -> None:
    forecast_sql = macros.model_macro("power", "forecast", MANIFESTS["power"].signature)
    assert forecast_sql is not None and "AS TABLE" in forecast_sql
    assert macros.model_macro("predict", "regression", MANIFESTS["adder"].signature) is None


def test_output_types_follow_the_signature() -> None:
    assert output_sql_type(MANIFESTS["adder"].signature) == "DOUBLE"
    assert output_sql_type(MANIFESTS["sentiment"].signature) == 'STRUCT("label" VARCHAR, "confidence" DOUBLE)'


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
    from sqlml.bridge.manifest import Column

    expression = macros.checked_argument(argument, Column(name="feature_x", type=column_type), "m")  # type: ignore[arg-type]
    con = duckdb.connect()
    if ok:
        con.sql(f"SELECT {expression}").fetchall()
    else:
        with pytest.raises(duckdb.Error, match='column "feature_x" of model "m" must be'):
            con.sql(f"SELECT {expression}").fetchall()
