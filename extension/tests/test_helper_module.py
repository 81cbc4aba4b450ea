"""Unit tests of the built PL/Python helper (extension/build_helper.py): a stub bridge, a fake plpy."""

from __future__ import annotations

import ast
import inspect
import json
import re
import socket
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from build_helper import build
from plpy_fakes import FakePlpy, PlpyError
from stub_bridge import StubBehaviour, stub_bridge


def test_helper_imports_only_the_standard_library() -> None:
    tree = ast.parse(build())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}  # fmt: skip
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}  # fmt: skip
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)


def test_predict_one_row(helper: ModuleType, plpy: FakePlpy) -> None:
    assert json.loads(helper.predict(plpy, "lead", '{"a": 1, "b": 2}')) == {"probability": 0.12}


def test_null_input_gives_null(helper: ModuleType, plpy: FakePlpy) -> None:
    assert helper.predict(plpy, "lead", '{"a": null, "b": 2}') is None


def test_bridge_error_becomes_sql_error_with_sqlstate_and_hint(helper: ModuleType, plpy: FakePlpy) -> None:
    with pytest.raises(PlpyError) as caught:
        helper.predict(plpy, "leadx", '{"a": 1, "b": 2}')
    error = caught.value
    assert str(error) == 'model "leadx" not found'
    assert error.sqlstate == "42704"
    assert error.hint == "did you mean 'lead'?"
    assert type(error).__name__ == "sqlml" and type(error).__module__ == "builtins"


def test_features_must_be_an_object(helper: ModuleType, plpy: FakePlpy) -> None:
    with pytest.raises(PlpyError, match="JSON object") as caught:
        helper.predict(plpy, "lead", "[1, 2]")
    assert caught.value.sqlstate == "22023"


@pytest.mark.parametrize("name", ["lead; DROP TABLE x", "../etc/passwd", "Lead", "", "a" * 64, "lead:x/y"])
def test_model_names_are_validated_before_any_request(
    helper: ModuleType, plpy: FakePlpy, bridge: tuple[str, StubBehaviour], name: str
) -> None:
    with pytest.raises(PlpyError, match="invalid model name") as caught:
        helper.predict(plpy, name, '{"a": 1}')
    assert caught.value.sqlstate == "42602"
    assert bridge[1].requests == []


def test_model_reference_with_version_or_alias(helper: ModuleType, plpy: FakePlpy, bridge: Any) -> None:
    helper.predict(plpy, "lead:staging", '{"a": 1, "b": 2}')
    helper.predict(plpy, "lead:2", '{"a": 1, "b": 2}')
    assert [path for _, path, _ in bridge[1].requests] == [
        "/v1/models/lead:staging/predict",
        "/v1/models/lead:2/predict",
    ]


def test_batch_preserves_order_nulls_and_chunks(helper: ModuleType, bridge: Any) -> None:
    plpy = FakePlpy({"bridge_url": bridge[0], "batch_size": "3"})
    rows = [json.dumps({"a": i, "b": 1}) if i % 4 else None for i in range(10)]
    out = list(helper.predict_batch(plpy, "lead", rows))
    assert [o for o, _ in out] == list(range(1, 11))
    for (_, result), row in zip(out, rows, strict=True):
        if row is None:
            assert result is None
        else:
            assert json.loads(result)["probability"] == pytest.approx(json.loads(row)["a"] * 0.1 + 0.01)
    predict_calls = [body for _, path, body in bridge[1].requests if path.endswith("/predict")]
    assert [len(body["rows"]) for body in predict_calls] == [2, 2, 2, 1]  # NULLs never travel


def test_batch_error_raises_in_raise_mode(helper: ModuleType, plpy: FakePlpy) -> None:
    rows = ['{"a": 1, "b": 1}', '{"a": "oops", "b": 1}']
    with pytest.raises(PlpyError, match="must be a number"):
        list(helper.predict_batch(plpy, "lead", rows))


def test_null_mode_isolates_the_bad_rows(helper: ModuleType, bridge: Any) -> None:
    plpy = FakePlpy({"bridge_url": bridge[0], "on_error": "null"})
    rows = [json.dumps({"a": i, "b": 0}) for i in range(16)]
    rows[5] = '{"a": "five", "b": 0}'
    rows[11] = '{"a": 1, "b": 0, "extra": 1}'
    out = dict(helper.predict_batch(plpy, "lead", rows))
    assert out[6] is None and out[12] is None
    assert all(json.loads(out[i + 1])["probability"] == pytest.approx(i * 0.1) for i in range(16) if i not in (5, 11))
    warnings = [m for m in plpy.messages if m[0] == "warning"]
    assert len(warnings) == 2 and "1 row set to NULL" in warnings[0][1]
    # bisection: log2(16) extra requests per bad row, not one request per row
    assert len(bridge[1].requests) < 16


def test_predict_rows_sends_the_array_as_is_and_bisects_only_in_null_mode(helper: ModuleType, bridge: Any) -> None:
    rows = [{"a": i, "b": 0} for i in range(8)]
    raising = FakePlpy({"bridge_url": bridge[0]})
    out = json.loads(helper.predict_rows_json(raising, "lead", json.dumps(rows)))
    assert [json.loads(o)["probability"] for o in out] == pytest.approx([i * 0.1 for i in range(8)])
    assert [body["rows"] for _, path, body in bridge[1].requests if path.endswith("/predict")] == [rows]

    rows[3]["a"] = "three"
    with pytest.raises(PlpyError, match="must be a number"):
        helper.predict_rows_json(raising, "lead", json.dumps(rows))
    nulling = FakePlpy({"bridge_url": bridge[0], "on_error": "null"})
    sent_before = len(bridge[1].requests)
    out = json.loads(helper.predict_rows_json(nulling, "lead", json.dumps(rows)))
    sizes = [len(body["rows"]) for _, path, body in bridge[1].requests[sent_before:] if path.endswith("/predict")]
    assert sizes[:2] == [8, 4] and sizes.count(8) == 1  # halved at once, never sent whole a second time
    assert out[3] is None and json.loads(out[4])["probability"] == pytest.approx(0.4)
    assert any(m[0] == "warning" and "1 row set to NULL" in m[1] for m in nulling.messages)


def test_non_object_element_in_batch(helper: ModuleType, plpy: FakePlpy) -> None:
    with pytest.raises(PlpyError, match="element 2 of the rows array is not a JSON object"):
        list(helper.predict_batch(plpy, "lead", ['{"a": 1, "b": 1}', "[1]"]))


def test_sentiment_single_and_batch(helper: ModuleType, bridge: Any) -> None:
    plpy = FakePlpy({"bridge_url": bridge[0], "batch_size": "2"})
    # this bridge's model answers label and confidence only, as versions trained before the scores do
    no_scores = {"score_positive": None, "score_negative": None, "score_neutral": None, "score_mixed": None}
    assert helper.sentiment(plpy, "a good day") == {"label": "positive", "confidence": 0.9, **no_scores}
    out = list(helper.sentiment_batch(plpy, ["good", None, "bad", "great"]))
    blank = (None,) * 4
    assert out == [(1, "positive", 0.9, *blank), (2, None, None, *blank), (3, "negative", 0.8, *blank),
                   (4, "positive", 0.9, *blank)]  # fmt: skip
    columns_requests = [body for _, _, body in bridge[1].requests if body and "columns" in body]
    assert [len(b["columns"]["text"]) for b in columns_requests] == [2, 2]


def test_batch_requests_start_at_64_rows_and_grow_while_fast(helper: ModuleType, bridge: Any) -> None:
    plpy = FakePlpy({"bridge_url": bridge[0]})  # sqlml.batch_size left at its default, 10,000
    out = list(helper.sentiment_batch(plpy, ["good"] * 500))
    assert [row[0] for row in out] == list(range(1, 501)) and {row[1] for row in out} == {"positive"}
    columns_requests = [body for _, _, body in bridge[1].requests if body and "columns" in body]
    assert [len(b["columns"]["text"]) for b in columns_requests] == [64, 128, 256, 52]


def test_batch_requests_shrink_when_slow_against_the_timeout(helper: ModuleType, bridge: Any) -> None:
    bridge[1].delay_s = 0.3  # each request takes over half of a 500 ms timeout
    plpy = FakePlpy({"bridge_url": bridge[0], "timeout_ms": "500"})
    rows = ['{"a": 1, "b": 2}'] * 100
    out = list(helper.predict_batch(plpy, "lead", rows))
    assert len(out) == 100
    sizes = [len(body["rows"]) for _, _, body in bridge[1].requests if body and "rows" in body]
    assert sizes == [64, 32, 4]  # halved after each slow answer


def test_chunk_sizer_stays_within_its_bounds(helper: ModuleType) -> None:
    settings = helper.Settings("http://x", timeout_ms=8000, batch_size=100, on_error="raise", sentiment_model="s")
    sizer = helper.ChunkSizer(settings)
    for _ in range(10):
        sizer.record(sizer.size, 0.01)  # fast: doubles up to sqlml.batch_size
    assert sizer.size == 100
    for _ in range(20):
        sizer.record(sizer.size, 5.0)  # over half the timeout: halves down to one row
    assert sizer.size == 1
    sizer.record(1, 2.0)  # between an eighth and a half: stays
    assert sizer.size == 1


def test_ten_megabyte_text(helper: ModuleType, plpy: FakePlpy) -> None:
    assert helper.sentiment(plpy, "good " * 2_000_000)["label"] == "positive"


def test_bridge_down_fails_fast(helper: ModuleType) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    plpy = FakePlpy({"bridge_url": f"http://127.0.0.1:{port}", "timeout_ms": "500"})
    started = time.monotonic()
    with pytest.raises(PlpyError, match="cannot reach the bridge") as caught:
        helper.predict(plpy, "lead", '{"a": 1, "b": 1}')
    assert time.monotonic() - started < 1.0
    assert caught.value.sqlstate == "08001"
    assert "sqlml.bridge_url" in caught.value.hint


def test_slow_bridge_times_out_within_timeout_ms(helper: ModuleType) -> None:
    with stub_bridge(StubBehaviour(delay_s=2.0)) as (url, _):
        plpy = FakePlpy({"bridge_url": url, "timeout_ms": "300"})
        started = time.monotonic()
        with pytest.raises(PlpyError, match="did not answer within 300 ms") as caught:
            helper.predict(plpy, "lead", '{"a": 1, "b": 1}')
        assert time.monotonic() - started < 1.0
        assert caught.value.sqlstate == "57014"


def test_null_mode_turns_bridge_down_into_null_and_warning(helper: ModuleType) -> None:
    plpy = FakePlpy({"bridge_url": "http://127.0.0.1:9", "on_error": "null", "timeout_ms": "300"})
    assert helper.predict(plpy, "lead", '{"a": 1, "b": 1}') is None
    assert list(helper.predict_batch(plpy, "lead", ['{"a": 1, "b": 1}'] * 3)) == [(1, None), (2, None), (3, None)]
    assert [m[0] for m in plpy.messages] == ["warning", "warning"]


def test_malformed_response(helper: ModuleType) -> None:
    with stub_bridge(StubBehaviour(malformed=True)) as (url, _):
        with pytest.raises(PlpyError, match="not JSON") as caught:
            helper.predict(FakePlpy({"bridge_url": url}), "lead", '{"a": 1, "b": 1}')
        assert caught.value.sqlstate == "08P01"


def test_connection_is_kept_alive_with_nodelay(helper: ModuleType, plpy: FakePlpy) -> None:
    helper.predict(plpy, "lead", '{"a": 1, "b": 1}')
    (conn,) = helper._connections.values()
    first_socket = conn.sock
    helper.predict(plpy, "lead", '{"a": 1, "b": 1}')
    assert conn.sock is first_socket
    assert first_socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_recovers_after_bridge_restart(helper: ModuleType) -> None:
    with stub_bridge() as (url, _):
        plpy = FakePlpy({"bridge_url": url})
        helper.predict(plpy, "lead", '{"a": 1, "b": 1}')
    port = url.rsplit(":", 1)[1]
    with pytest.raises(PlpyError):
        helper.predict(plpy, "lead", '{"a": 1, "b": 1}')  # down: a clear error
    import threading
    from http.server import ThreadingHTTPServer

    from stub_bridge import _Handler  # restart on the same port

    handler = type("Handler", (_Handler,), {"behaviour": StubBehaviour()})
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert json.loads(helper.predict(plpy, "lead", '{"a": 1, "b": 1}')) == {"probability": 0.11}
    finally:
        server.shutdown()
        server.server_close()


def test_token_is_sent_as_bearer(helper: ModuleType) -> None:
    with stub_bridge(StubBehaviour(required_token="s3cret")) as (url, _):
        with pytest.raises(PlpyError, match="bearer token") as caught:
            helper.predict(FakePlpy({"bridge_url": url}), "lead", '{"a": 1, "b": 1}')
        assert caught.value.sqlstate == "28000"
        helper.forget_token()
        ok = helper.predict(FakePlpy({"bridge_url": url}, token="s3cret"), "lead", '{"a": 1, "b": 1}')
        assert json.loads(ok) == {"probability": 0.11}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bridge_url": "ftp://x"}, "http"),
        ({"timeout_ms": "soon"}, "integer"),
        ({"batch_size": "0"}, "between"),
        ({"on_error": "ignore"}, "'raise' or 'null'"),
    ],
)
def test_bad_settings(helper: ModuleType, settings: dict[str, str], message: str) -> None:
    with pytest.raises(PlpyError, match=message):
        helper.predict(FakePlpy(settings), "lead", "{}")


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1; DROP TABLE leads",
        "select 1;;select 2",
        "DELETE FROM leads",
        "INSERT INTO t VALUES (1)",
        "/* x */ UPDATE t SET a = 1",
        "-- comment\nDROP TABLE t",
        "SELECT 'unterminated",
        "SELECT $$a$$; TRUNCATE t",
        "",
    ],
)
def test_queries_that_are_not_one_select_are_rejected(helper: ModuleType, query: str) -> None:
    with pytest.raises(helper.BridgeError) as caught:
        helper.check_query(query, "ml.predict_query")
    assert caught.value.sqlstate == "42601"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT 1;", "SELECT 1"),
        ("select ';' as a, \"x;y\" from t", "select ';' as a, \"x;y\" from t"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT 1) SELECT * FROM x"),
        ("-- leads\nSELECT $q$;$q$ /* ; */", "-- leads\nSELECT $q$;$q$ /* ; */"),
        ("(SELECT 1)", "(SELECT 1)"),
        ("VALUES (1, 2)", "VALUES (1, 2)"),
    ],
)
def test_single_selects_pass(helper: ModuleType, query: str, expected: str) -> None:
    assert helper.check_query(query, "ml.predict_query") == expected


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def test_function_ddl_for_one_output() -> None:
    import sqlml_pg

    entry = {"name": "lead_score", "version": 3, "task": "classification", "description": "Caravan",
             "signature": {"inputs": [{"name": "mostype", "type": "bigint"}, {"name": "select", "type": "double"}],
                           "outputs": [{"name": "probability", "type": "double"}]}}  # fmt: skip
    generated = sqlml_pg.function_ddl(_quote_ident, _quote_literal, entry)
    create = next(s for s in generated.ddl if s.startswith("CREATE FUNCTION"))
    assert 'ml."lead_score"("mostype" bigint, "select" double precision) RETURNS double precision' in create
    assert "STRICT" in create and "SECURITY DEFINER" in create
    assert generated.identity == "bigint, double precision"
    assert any(s.startswith("COMMENT ON FUNCTION") and "version 3" in s for s in generated.ddl)
    assert any("TO sqlml_user" in s for s in generated.ddl)


def test_function_ddl_for_several_outputs_makes_a_type() -> None:
    import sqlml_pg

    outputs = [{"name": "label", "type": "text"}, {"name": "p", "type": "double"}]
    entry = {"name": "churn", "task": "classification",
             "signature": {"inputs": [{"name": "x", "type": "double"}], "outputs": outputs}}  # fmt: skip
    ddl = sqlml_pg.function_ddl(_quote_ident, _quote_literal, entry).ddl
    assert 'CREATE TYPE ml."churn_result" AS ("label" text, "p" double precision)' in ddl
    assert any('RETURNS ml."churn_result"' in s for s in ddl)


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "predict", "signature": {"inputs": [{"name": "x", "type": "double"}],
                                          "outputs": [{"name": "y", "type": "double"}]}},
        {"name": "evil", "signature": {"inputs": [{"name": 'x") RETURNS int AS $$;', "type": "double"}],
                                       "outputs": [{"name": "y", "type": "double"}]}},
        {"name": "Evil\"; DROP", "signature": {"inputs": [{"name": "x", "type": "double"}],
                                               "outputs": [{"name": "y", "type": "double"}]}},
        {"name": "odd", "signature": {"inputs": [{"name": "x", "type": "blob"}],
                                      "outputs": [{"name": "y", "type": "double"}]}},
        {"name": "power", "task": "forecast", "signature": {"inputs": [], "outputs": []}},
    ],
)  # fmt: skip
def test_function_ddl_refuses_unsafe_or_reserved(entry: dict[str, Any]) -> None:
    import sqlml_pg

    assert sqlml_pg.function_ddl(_quote_ident, _quote_literal, entry) is None


def test_explain_forecast_models_lifecycle(helper: ModuleType, plpy: FakePlpy, bridge: Any) -> None:
    assert list(helper.explain(plpy, "lead", '{"a": 2, "b": 3}', 1)) == [("a", 2.0, 0.5)]
    # ml.forecast (SECURITY INVOKER) reads its queries, then sends the call through ml._forecast_rows
    rows = json.loads(helper.forecast_rows_json(plpy, "power", None, 2, ["p10", "p90"], None, None))
    assert rows[0] == {"series": "house", "ts": "2010-11-26T00:00:00", "quantile": "p10", "value": 0.0}
    assert len(rows) == 4
    with pytest.raises(PlpyError, match=r"ml\._forecast_rows future takes a JSON array of row objects"):
        helper.forecast_rows_json(plpy, "power", None, 2, ["p50"], '{"ts": 1}', None)
    assert [m["name"] for m in helper.models(plpy)] == ["lead", "sentiment", "power"]
    assert json.loads(helper.deploy(plpy, "lead", 2, "production")) == {"alias": "production", "version": 2}
    assert helper.rollback(plpy, "lead", "production") == 1
    with pytest.raises(PlpyError, match="invalid alias"):
        helper.deploy(plpy, "lead", 2, "prod'; --")
    with pytest.raises(PlpyError, match="horizon"):
        list(helper.forecast(plpy, "power", None, 0, ["p50"]))


EXTENSION_SQL = "\n".join(
    (Path(__file__).parents[1] / "sql" / name).read_text() for name in ("sqlml.sql.in", "training.sql")
)
PLPYTHON_BODY = re.compile(r"^CREATE FUNCTION (ml\.\w+)\(.*?\nAS \$py\$\n(.*?)\n\$py\$", re.S | re.M)


def _as_function(body: str, parameters: str = "") -> str:
    """A PL/Python body as the function PL/Python makes of it (its `return` needs one)."""
    return f"def body({parameters}):\n" + "".join(f"    {line}\n" for line in body.splitlines())


def _helper_uses(body: str) -> list[tuple[str, ast.Call | None]]:
    """What a PL/Python body uses of the helper module, through `GD["sqlml"]` or a name bound to it:
    (attribute, the call when it is called)."""
    tree = ast.parse(_as_function(body))

    def is_gd(node: ast.expr) -> bool:
        return isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "GD"

    aliases = {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and is_gd(node.value)
               for target in node.targets if isinstance(target, ast.Name)}  # fmt: skip

    def is_module(node: ast.expr) -> bool:
        return is_gd(node) or (isinstance(node, ast.Name) and node.id in aliases)

    calls = {id(node.func): node for node in ast.walk(tree) if isinstance(node, ast.Call)}
    return [(node.attr, calls.get(id(node))) for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and is_module(node.value)]  # fmt: skip


def test_everything_the_sql_uses_of_the_helper_exists_and_takes_those_arguments(helper: ModuleType) -> None:
    entry = {"name": "lead", "signature": {"inputs": [{"name": "a", "type": "double"}],
                                           "outputs": [{"name": "p", "type": "double"}]}}  # fmt: skip
    generated = helper.function_ddl(_quote_ident, _quote_literal, entry)
    typed = generated.create_function(_quote_ident, _quote_literal, "double precision")
    typed_body = typed.split(" AS '", 1)[1][:-1].replace("''", "'")
    bodies = [*PLPYTHON_BODY.findall(EXTENSION_SQL), ("ml.lead", typed_body)]  # overloads each have one
    assert len(bodies) == EXTENSION_SQL.count("LANGUAGE plpython3u") + 1  # every body was found
    uses = [(function, *use) for function, body in bodies for use in _helper_uses(body)]
    assert {"predict_typed", "_open", "raise_sql", "BridgeError"} <= {attribute for _, attribute, _ in uses}
    for function, attribute, call in uses:
        assert hasattr(helper, attribute), f"{function} uses {attribute}"
        if call is not None:
            signature = inspect.signature(getattr(helper, attribute))
            signature.bind(*call.args, **{keyword.arg: keyword.value for keyword in call.keywords})


def test_ml_job_reaches_the_bridge_through_the_helper(helper: ModuleType, plpy: FakePlpy, bridge: Any) -> None:
    """ml.job's body (training.sql) uses the helper's internals: its settings, bridge and errors."""
    body = dict(PLPYTHON_BODY.findall(EXTENSION_SQL))["ml.job"]
    namespace: dict[str, Any] = {}
    exec(_as_function(body, "plpy, GD, id"), namespace)
    with pytest.raises(PlpyError, match="no route /v1/jobs/abc") as caught:  # the stub bridge serves no jobs
        namespace["body"](plpy, {"sqlml": helper}, "abc")
    assert caught.value.sqlstate == "42704"
    assert [path for _, path, _ in bridge[1].requests] == ["/v1/jobs/abc"]


def test_set_returning_functions_start_when_iterated(helper: ModuleType, bridge: Any) -> None:
    plpy = FakePlpy({"bridge_url": bridge[0], "batch_size": "1"})
    rows = helper.predict_batch(plpy, "lead", ['{"a": 1, "b": 1}', '{"a": "oops", "b": 1}'])
    assert plpy.executed == [] and bridge[1].requests == []  # no setting read, no request sent yet
    assert next(rows)[0] == 1
    with pytest.raises(PlpyError, match="must be a number") as caught:  # raised while iterating: a SQL error still
        next(rows)
    assert caught.value.sqlstate == "22023" and type(caught.value).__name__ == "sqlml"


def test_null_mode_does_not_hide_bad_settings(helper: ModuleType) -> None:
    with pytest.raises(PlpyError, match="integer"):
        helper.predict(FakePlpy({"on_error": "null", "timeout_ms": "soon"}), "lead", "{}")
