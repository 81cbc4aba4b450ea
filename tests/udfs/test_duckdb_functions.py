"""Every `ml.*` function on a real DuckDB, backed by fake models in a temporary store."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from sqlml.bridge.client import LocalClient
from sqlml.bridge.registry import Registry
from sqlml.udfs import client_of, refresh, register
from tests.udfs.fakes import MANIFESTS, publish_fakes

Con = duckdb.DuckDBPyConnection


def one(con: Con, sql: str) -> object:
    rows = con.sql(sql).fetchall()
    assert len(rows) == 1
    return rows[0][0]


# -- ml.sentiment (the typed macro of a text model) ----------------------------------------------


def test_sentiment_returns_a_struct_with_label_and_confidence(con: Con) -> None:
    assert one(con, "SELECT ml.sentiment('I love it')") == {"label": "positive", "confidence": 0.8}
    assert one(con, "SELECT (ml.sentiment('Your product stinks and I''ll never buy from you again!')).label") == (
        "negative"
    )


@pytest.mark.parametrize("text", ["NULL", "''", "'   '"])
def test_sentiment_null_empty_and_blank_give_null(con: Con, text: str) -> None:
    assert one(con, f"SELECT ml.sentiment({text}) IS NULL") is True
    assert one(con, f"SELECT (ml.sentiment({text})).label") is None


def test_sentiment_handles_a_10_mb_string(con: Con) -> None:
    label = one(con, "SELECT (ml.sentiment(repeat('a', 10_000_000) || ' great')).label")
    assert label == "positive"


def test_sentiment_keeps_order_over_many_vectors(con: Con) -> None:
    rows = con.sql(
        "SELECT i, (ml.sentiment(CASE WHEN i % 3 = 0 THEN 'great' WHEN i % 3 = 1 THEN 'awful' ELSE 'meh' END)).label "
        "FROM range(10000) t(i) ORDER BY i"
    ).fetchall()
    expected = {0: "positive", 1: "negative", 2: "neutral"}
    assert [label for _, label in rows] == [expected[i % 3] for i, _ in rows]


def test_sentiment_with_a_language_reads_english_only(con: Con) -> None:
    """Aurora's detect_sentiment(text, 'en') form, with PostgreSQL's error for another language."""
    plain = one(con, "SELECT ml.sentiment('I love it')")
    assert one(con, "SELECT ml.sentiment('I love it', 'en')") == plain
    assert one(con, "SELECT ml.sentiment('I love it', ' EN ')") == plain
    with pytest.raises(duckdb.Error, match=r"ml\.sentiment reads 'en' only, not 'fr' \(the sentiment model"):
        con.sql("SELECT ml.sentiment('une belle journée', 'fr')").fetchall()


def test_sentiment_rejects_a_number_naming_the_column(con: Con) -> None:
    with pytest.raises(duckdb.Error, match='column "text" of model "sentiment" must be VARCHAR, got INTEGER'):
        con.sql("SELECT ml.sentiment(42)").fetchall()


# -- typed per-model macros --------------------------------------------------------------------


def test_typed_macro_scores_columns_and_structs(con: Con) -> None:
    assert one(con, "SELECT ml.adder(1, 2.5, 3)") == 6.5
    # the struct form ignores extra fields, so a table alias works
    con.execute("CREATE TABLE leads AS SELECT 7 AS id, 1 AS a, 2.0::DOUBLE AS b, 3 AS c")
    assert one(con, "SELECT ml.adder(l) FROM leads l") == 6.0


def test_typed_macro_with_several_outputs_returns_a_struct(con: Con) -> None:
    value = one(con, "SELECT ml.stamp(TIMESTAMP '2024-03-01 13:45:00', 'hi')")
    assert value == {"hour": 13, "shout": "HI"}


def test_typed_macro_null_in_null_out_per_row(con: Con) -> None:
    rows = con.sql("SELECT ml.adder(a, 1.0, 1) FROM (VALUES (1), (NULL), (3)) v(a)").fetchall()
    assert rows == [(3.0,), (None,), (5.0,)]


def test_typed_macro_keeps_order_over_many_vectors(con: Con) -> None:
    rows = con.sql("SELECT i, ml.adder(i, 0.5, -i) FROM range(50000) t(i) ORDER BY i").fetchall()
    assert all(total == 0.5 for _, total in rows) and len(rows) == 50000
    rows = con.sql("SELECT ml.adder(i, 0, 0) FROM range(5000) t(i)").fetchall()
    assert [r[0] for r in rows] == [float(i) for i in range(5000)]


def test_typed_macro_wrong_type_names_the_column(con: Con) -> None:
    with pytest.raises(duckdb.Error, match=r'column "a" of model "adder" must be BIGINT, got VARCHAR .*CAST'):
        con.sql("SELECT ml.adder('x', 1.0, 1)").fetchall()
    with pytest.raises(duckdb.Error, match='column "b" of model "adder" must be DOUBLE, got BOOLEAN'):
        con.sql("SELECT ml.adder(1, true, 1)").fetchall()


def test_struct_form_missing_field_names_it(con: Con) -> None:
    with pytest.raises(duckdb.Error, match='"c"'):
        con.sql("SELECT ml.adder({'a': 1, 'b': 2.0})").fetchall()


def test_forecast_model_gets_its_own_table_macro(con: Con) -> None:
    rows = con.sql("SELECT series, quantile, value FROM ml.power(horizon := 1, quantiles := ['p50'])").fetchall()
    assert rows == [("global_active_power", "p50", 51.0), ("sub_metering_1", "p50", 51.0)]


# -- ml.predict(model, row) ----------------------------------------------------------------------


def test_predict_returns_json_of_the_outputs(con: Con) -> None:
    assert json.loads(str(one(con, "SELECT ml.predict('adder', {'a': 1, 'b': 2.5, 'c': 3})"))) == {"total": 6.5}
    assert one(con, "SELECT ml.predict('adder', {'a': 1, 'b': 2.5, 'c': 3}) ->> 'total'") == "6.5"
    assert json.loads(str(one(con, "SELECT ml.predict('sentiment', {'text': 'awful'})")))["label"] == "negative"


def test_predict_takes_a_table_alias_and_ignores_extra_fields(con: Con) -> None:
    con.execute("CREATE TABLE t AS SELECT i AS id, i AS a, 0.5 AS b, 1 AS c FROM range(3000) r(i)")
    rows = con.sql("SELECT id, ml.predict('adder', t) ->> 'total' FROM t ORDER BY id").fetchall()
    assert [float(total) for _, total in rows] == [i + 1.5 for i in range(3000)]


def test_predict_strict_names_extra_fields(con: Con) -> None:
    with pytest.raises(duckdb.Error, match=r'model "adder" has no input column "d" \(hint: .*strict := false'):
        con.sql("SELECT ml.predict('adder', {'a': 1, 'b': 2, 'c': 3, 'd': 4}, strict := true)").fetchall()


def test_predict_missing_field_names_it_and_spots_the_typo(con: Con) -> None:
    with pytest.raises(duckdb.Error, match=r"""missing input column "b" \(hint: the row has 'bb': a typo\?\)"""):
        con.sql("SELECT ml.predict('adder', {'a': 1, 'bb': 2, 'c': 3})").fetchall()


def test_predict_wrong_type_names_the_column(con: Con) -> None:
    with pytest.raises(duckdb.Error, match='column "a" of model "adder" must be an integer, got text'):
        con.sql("SELECT ml.predict('adder', {'a': 'one', 'b': 2, 'c': 3})").fetchall()
    with pytest.raises(duckdb.Error, match='column "text" of model "sentiment" must be text'):
        con.sql("SELECT ml.predict('sentiment', {'text': 5})").fetchall()


def test_predict_unknown_model_hints_close_names(con: Con) -> None:
    with pytest.raises(duckdb.Error, match=r"""model "addr" not found \(hint: did you mean 'adder'\?\)"""):
        con.sql("SELECT ml.predict('addr', {'a': 1})").fetchall()


def test_predict_nulls(con: Con) -> None:
    rows = con.sql(
        "SELECT ml.predict('adder', r) "
        "FROM (VALUES ({'a': 1, 'b': 1.0, 'c': NULL}), (NULL), ({'a': 1, 'b': 1.0, 'c': 1})) v(r)"
    ).fetchall()
    assert rows[0][0] is None and rows[1][0] is None and json.loads(rows[2][0]) == {"total": 3.0}


def test_predict_with_timestamps_and_a_model_per_row(con: Con) -> None:
    value = one(con, "SELECT ml.predict('stamp', {'at': TIMESTAMP '2024-01-01 07:30:00', 'note': 'x'}) ->> 'hour'")
    assert value == "7"
    rows = con.sql(
        "SELECT ml.predict(m, {'text': 'great'}) ->> 'label' FROM (VALUES ('sentiment'), ('sentiment:1')) v(m)"
    ).fetchall()
    assert rows == [("positive",), ("positive",)]


# -- ml.explain ------------------------------------------------------------------------------


def test_explain_returns_top_k_contributions_sorted(con: Con) -> None:
    value = one(con, "SELECT ml.explain('adder', {'a': 1, 'b': -5.0, 'c': 3}, 2)")
    assert value == [
        {"feature": "b", "value": -5.0, "contribution": -5.0},
        {"feature": "c", "value": 3.0, "contribution": 3.0},
    ]
    assert one(con, "SELECT len(ml.explain('adder', {'a': 1, 'b': 2.0, 'c': 3}))") == 3


def test_explain_rejects_bad_top_k_and_unsupported_models(con: Con) -> None:
    with pytest.raises(duckdb.Error, match="top_k must be a positive integer"):
        con.sql("SELECT ml.explain('adder', {'a': 1, 'b': 2.0, 'c': 3}, 0)").fetchall()
    with pytest.raises(duckdb.Error, match=r'model "sentiment".*does not support explain'):
        con.sql("SELECT ml.explain('sentiment', {'text': 'x'}, 1)").fetchall()


def test_explain_over_many_rows_keeps_order(con: Con) -> None:
    rows = con.sql(
        "SELECT i, ml.explain('adder', {'a': i, 'b': 0.0, 'c': 0}, 1)[1].value FROM range(4500) t(i) ORDER BY i"
    ).fetchall()
    assert [value for _, value in rows] == [float(i) for i in range(4500)]


# -- ml.forecast and ml.models -------------------------------------------------------------------


def test_forecast_defaults_to_every_series_48_hours_and_three_quantiles(con: Con) -> None:
    rows = con.sql("SELECT * FROM ml.forecast('power')").fetchall()
    assert len(rows) == 2 * 48 * 3
    assert con.sql("SELECT * FROM ml.forecast('power') LIMIT 0").columns == ["series", "ts", "quantile", "value"]
    series, ts, quantile, value = rows[0]
    assert (series, ts, quantile, value) == ("global_active_power", datetime(2010, 11, 26, 23), "p10", 11.0)


def test_forecast_arguments(con: Con) -> None:
    rows = con.sql(
        "SELECT quantile, value FROM ml.forecast('power', series := 'sub_metering_1', horizon := 2, "
        "quantiles := ['p5', 'mean'])"
    ).fetchall()
    assert rows == [("p5", 6.0), ("mean", 51.0), ("p5", 7.0), ("mean", 52.0)]
    with pytest.raises(duckdb.Error, match="horizon must be between 1 and 168"):
        con.sql("SELECT * FROM ml.forecast('power', horizon := 1000)").fetchall()
    with pytest.raises(duckdb.Error, match=r"model \"powr\" not found \(hint: did you mean 'power'\?\)"):
        con.sql("SELECT * FROM ml.forecast('powr')").fetchall()


def test_models_lists_every_model(con: Con) -> None:
    rows = con.sql("SELECT name, version, aliases, task, metrics, loaded FROM ml.models() ORDER BY name").fetchall()
    assert [r[0] for r in rows] == sorted(MANIFESTS)
    adder = rows[0]
    assert adder[1:5] == (1, {"production": 1}, "regression", {"rmse": 0.0})
    con.sql("SELECT ml.adder(1, 1.0, 1)").fetchall()
    assert one(con, "SELECT loaded FROM ml.models() WHERE name = 'adder'") is True


# -- registration --------------------------------------------------------------------------------


def test_refresh_picks_up_new_models(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "store")
    publish_fakes(registry, tmp_path, names=("sentiment",))
    con = duckdb.connect()
    register(con, LocalClient(registry))
    with pytest.raises(duckdb.CatalogException):
        con.sql("SELECT ml.adder(1, 1.0, 1)").fetchall()
    assert one(con, "SELECT ml.predict('sentiment', {'text': 'bad'}) ->> 'label'") == "negative"
    publish_fakes(registry, tmp_path, names=("adder",))
    assert refresh(con) == ["adder", "sentiment"]
    assert one(con, "SELECT ml.adder(1, 1.0, 1)") == 3.0


def test_register_twice_replaces_the_client_and_keeps_the_database_file_clean(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "store")
    publish_fakes(registry, tmp_path)
    db = tmp_path / "user.duckdb"
    con = duckdb.connect(str(db))
    first, second = LocalClient(registry), LocalClient(registry)
    register(con, first)
    register(con, second)
    assert client_of(con) is second
    assert one(con, "SELECT ml.adder(1, 1.0, 1)") == 3.0
    con.close()
    with duckdb.connect(str(db)) as fresh:
        assert fresh.sql("SELECT count(*) FROM duckdb_schemas() WHERE schema_name = 'ml'").fetchall() == [(0,)]


def test_read_only_databases_work(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "store")
    publish_fakes(registry, tmp_path, names=("sentiment",))
    db = tmp_path / "ro.duckdb"
    with duckdb.connect(str(db)) as writer:
        writer.execute("CREATE TABLE reviews AS SELECT 'great' AS body")
    con = duckdb.connect(str(db), read_only=True)
    register(con, LocalClient(registry))
    assert one(con, "SELECT (ml.sentiment(body)).label FROM reviews") == "positive"
    con.close()
