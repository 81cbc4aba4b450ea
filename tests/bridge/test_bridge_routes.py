"""Every route of the bridge in-process: both batch formats, auth, and the one error envelope."""

from __future__ import annotations

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from sqlml.bridge.wire import ARROW_STREAM, read_ipc, write_ipc


def error_of(response: object) -> dict[str, object]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "hint", "detail"}
    return body["error"]  # type: ignore[no-any-return]


def test_health_ready_and_metrics_need_no_token(anon: TestClient) -> None:
    assert anon.get("/healthz").json()["status"] == "ok"
    assert anon.get("/readyz").json()["status"] == "ready"
    metrics = anon.get("/metrics")
    assert metrics.status_code == 200
    assert "sqlml_loaded_models" in metrics.text


def test_predict_json_columns_preserves_order_and_nulls(client: TestClient) -> None:
    response = client.post("/v1/models/sum/predict", json={"columns": {"a": [1, None, 3.5], "b": [1, 2, 3]}})
    assert response.status_code == 200
    assert response.json() == {"model": "sum", "version": 1, "columns": {"total": [2.0, None, 6.5]}}
    assert response.headers["X-Sqlml-Version"] == "1"


def test_predict_json_rows_mirrors_shape(client: TestClient) -> None:
    response = client.post("/v1/models/sum:2/predict", json={"rows": [{"a": 1, "b": 2}, {"b": 5}]})
    assert response.json() == {"model": "sum", "version": 2, "rows": [{"total": 103.0}, {"total": None}]}


def test_predict_arrow_round_trip(client: TestClient) -> None:
    table = pa.table({"a": pa.array([1.0, 2.0, None]), "b": pa.array([10, 20, 30], pa.int64())})
    response = client.post("/v1/models/sum/predict", content=write_ipc(table), headers={"Content-Type": ARROW_STREAM})
    assert response.status_code == 200
    assert response.headers["content-type"] == ARROW_STREAM
    assert response.headers["X-Sqlml-Model"] == "sum"
    assert read_ipc(response.content).column("total").to_pylist() == [11.0, 22.0, None]


def test_json_request_can_ask_for_arrow(client: TestClient) -> None:
    response = client.post("/v1/models/echo/predict", json={"rows": [{"text": "hi"}]}, headers={"Accept": ARROW_STREAM})
    assert read_ipc(response.content).to_pylist() == [{"echo": "hi"}]


def test_alias_reference_and_explicit_version(client: TestClient) -> None:
    body = {"columns": {"a": [1], "b": [1]}}
    assert client.post("/v1/models/sum:production/predict", json=body).json()["version"] == 1
    assert client.post("/v1/models/sum:latest/predict", json=body).json()["columns"]["total"] == [102.0]


def test_explain_json_and_arrow(client: TestClient) -> None:
    response = client.post("/v1/models/sum/explain", json={"rows": [{"a": 1, "b": -3}], "top_k": 1})
    row = response.json()["rows"][0]
    assert row["contributions"] == [{"feature": "b", "value": -3.0, "contribution": -3.0}]
    assert row["margin"] == -2.0
    table = pa.table({"a": [1.0, 2.0], "b": [5.0, 0.5]})
    arrow = client.post(
        "/v1/models/sum/explain?top_k=2", content=write_ipc(table), headers={"Content-Type": ARROW_STREAM}
    )
    contributions = read_ipc(arrow.content).column("contributions").to_pylist()
    assert [c[0]["feature"] for c in contributions] == ["b", "a"]


def test_explain_unsupported_runtime_is_400(client: TestClient) -> None:
    response = client.post("/v1/models/echo/explain", json={"rows": [{"text": "x"}]})
    assert response.status_code == 400
    assert error_of(response)["code"] == "not_supported"


def test_forecast_json_and_arrow(client: TestClient) -> None:
    body = {"series": ["house"], "horizon": 2, "quantiles": ["p10", "p90"]}
    rows = client.post("/v1/models/forecaster/forecast", json=body).json()["rows"]
    assert len(rows) == 4
    assert rows[0] == {"series": "house", "ts": "2024-01-01T00:00:00", "quantile": "p10", "value": 0.0}
    arrow = client.post("/v1/models/forecaster/forecast", json=body, headers={"Accept": ARROW_STREAM})
    table = read_ipc(arrow.content)
    assert table.schema.field("ts").type == pa.timestamp("us")
    assert table.num_rows == 4


def test_list_and_describe(client: TestClient) -> None:
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert {"sum", "echo", "guarded"} <= set(models)
    assert models["sum"]["versions"] == [1, 2]
    assert models["sum"]["aliases"] == {"production": 1}
    detail = client.get("/v1/models/sum").json()
    assert detail["manifest"]["version"] == 1
    assert detail["pinned"] is False
    assert client.get("/v1/models/sum/versions/2").json()["manifest"]["params"] == {"offset": 100.0}


def test_lifecycle_alias_rollback_and_pin(client: TestClient) -> None:
    assert client.put("/v1/models/sum/aliases/production", json={"version": 2}).json()["aliases"] == {"production": 2}
    assert client.post("/v1/models/sum/predict", json={"rows": [{"a": 0, "b": 0}]}).json()["version"] == 2
    assert client.post("/v1/models/sum/rollback", json={"alias": "production"}).json() == {
        "alias": "production",
        "version": 1,
    }
    assert client.put("/v1/models/sum/aliases/staging", json={"version": 2}).status_code == 200
    assert client.delete("/v1/models/sum/aliases/staging").json()["aliases"] == {"production": 1}
    pinned = client.put("/v1/models/echo/pin").json()
    assert pinned == {"model": "echo", "pinned": True, "loaded": [1]}
    assert client.get("/v1/models/echo").json()["pinned"] is True
    assert client.delete("/v1/models/echo/pin").json()["pinned"] is False


def test_rollback_without_older_version_is_409(client: TestClient) -> None:
    response = client.post("/v1/models/echo/rollback", json={})
    assert response.status_code == 409
    assert error_of(response)["code"] == "conflict"


def test_corrupt_alias_target_falls_back_to_previous_version(client: TestClient) -> None:
    ok = client.post("/v1/models/guarded/predict", json={"rows": [{"a": 1, "b": 1}]})
    assert ok.status_code == 200
    assert ok.json()["version"] == 1
    broken = client.post("/v1/models/guarded:2/predict", json={"rows": [{"a": 1, "b": 1}]})
    assert broken.status_code == 503
    error = error_of(broken)
    assert error["code"] == "model_load_failed"
    assert "truncated" in str(error["message"])
    assert 'sqlml_model_load_failures_total{model="guarded",version="2"}' in client.get("/metrics").text


@pytest.mark.parametrize(
    ("headers", "path", "status", "code"),
    [
        ({}, "/v1/models/sum/predict", 401, "unauthorized"),
        ({"Authorization": "Bearer nope"}, "/v1/models/sum/predict", 401, "unauthorized"),
        ({"Authorization": "Basic c3Vt"}, "/v1/models/sum/predict", 401, "unauthorized"),
        ({"Authorization": "Bearer sum-token"}, "/v1/models/echo/predict", 403, "forbidden"),
        ({"Authorization": "Bearer train-token"}, "/v1/models/sum/predict", 403, "forbidden"),
    ],
)
def test_auth_errors(anon: TestClient, headers: dict[str, str], path: str, status: int, code: str) -> None:
    response = anon.post(path, json={"rows": [{"a": 1, "b": 1}]}, headers=headers)
    assert response.status_code == status
    assert error_of(response)["code"] == code


def test_scopes_grant_what_they_name(anon: TestClient) -> None:
    body = {"rows": [{"a": 1, "b": 1}]}
    assert (
        anon.post("/v1/models/sum/predict", json=body, headers={"Authorization": "Bearer sum-token"}).status_code == 200
    )
    echo = {"rows": [{"text": "x"}]}
    assert (
        anon.post("/v1/models/echo/predict", json=echo, headers={"Authorization": "Bearer all-token"}).status_code
        == 200
    )
    put = anon.put("/v1/models/echo/pin", headers={"Authorization": "Bearer all-token"})
    assert put.status_code == 403
    assert anon.get("/v1/models", headers={"Authorization": "Bearer train-token"}).status_code == 200
    assert anon.get("/v1/models").status_code == 401


def test_auth_off_needs_no_token(make_app: object) -> None:
    app = make_app(auth=False)  # type: ignore[operator]
    with TestClient(app) as test_client:
        assert test_client.post("/v1/models/sum/predict", json={"rows": [{"a": 1, "b": 1}]}).status_code == 200


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "code"),
    [
        ("/v1/models/nope/predict", {"json": {"rows": []}}, 404, "model_not_found"),
        ("/v1/models/sun/predict", {"json": {"rows": []}}, 404, "model_not_found"),
        ("/v1/models/sum:9/predict", {"json": {"rows": []}}, 404, "version_not_found"),
        ("/v1/models/Sum/predict", {"json": {"rows": []}}, 400, "invalid_name"),
        ("/v1/models/..%2Fetc/predict", {"json": {"rows": []}}, 404, "not_found"),
        ("/v1/models/%2E%2E/predict", {"json": {"rows": []}}, 400, "invalid_name"),
        ("/v1/models/sum;drop%20table/predict", {"json": {"rows": []}}, 400, "invalid_name"),
        ("/v1/models/sum/predict", {"content": b"{not json"}, 400, "bad_request"),
        ("/v1/models/sum/predict", {"content": b""}, 400, "bad_request"),
        ("/v1/models/sum/predict", {"json": [1, 2]}, 400, "bad_request"),
        ("/v1/models/sum/predict", {"json": {"columns": {"a": [1]}, "rows": []}}, 400, "bad_request"),
        ("/v1/models/sum/predict", {"json": {"columns": {"a": [1], "b": [1, 2]}}}, 400, "bad_request"),
        ("/v1/models/sum/predict", {"json": {"columns": {"a": [1], "c": [1]}}}, 422, "invalid_input"),
        ("/v1/models/sum/predict", {"json": {"columns": {"a": [1]}}}, 422, "invalid_input"),
        ("/v1/models/sum/predict", {"json": {"columns": {"a": [1, "x"], "b": [1, 2]}}}, 422, "invalid_input"),
        ("/v1/models/sum/predict", {"json": {"rows": [{"a": {"x": 1}, "b": 1}]}}, 422, "invalid_input"),
        (
            "/v1/models/sum/predict",
            {"content": b"\x00garbage", "headers": {"Content-Type": ARROW_STREAM}},
            400,
            "bad_request",
        ),
        ("/v1/models/failing/predict", {"json": {"rows": [{"a": 1, "b": 1}]}}, 500, "internal_error"),
        ("/v1/models/sum/forecast", {"json": {"horizon": 0}}, 400, "bad_request"),
        ("/v1/models/sum/explain", {"json": {"rows": [], "top_k": 0}}, 400, "bad_request"),
        ("/v1/models/sum/versions/x", {}, 400, "bad_request"),
        ("/v1/nothing", {}, 404, "not_found"),
    ],
)
def test_bad_input_gets_the_envelope(client: TestClient, path: str, kwargs: dict, status: int, code: str) -> None:
    method = client.get if path.endswith(("/x", "nothing")) else client.post
    response = method(path, **kwargs)
    assert response.status_code == status, response.text
    assert error_of(response)["code"] == code


def test_model_not_found_suggests_close_names(client: TestClient) -> None:
    error = error_of(client.post("/v1/models/sun/predict", json={"rows": []}))
    assert "sum" in str(error["hint"])


def test_method_not_allowed_is_enveloped(client: TestClient) -> None:
    response = client.delete("/v1/models/sum/predict")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_huge_body_is_413(make_app: object) -> None:
    app = make_app(max_body_bytes=4096, auth=False)  # type: ignore[operator]
    with TestClient(app) as test_client:
        response = test_client.post("/v1/models/echo/predict", json={"rows": [{"text": "x" * 10_000}]})
        assert response.status_code == 413
        assert error_of(response)["code"] == "payload_too_large"

        def chunks():  # no Content-Length: the limit is enforced while streaming
            for _ in range(10):
                yield b"x" * 1000

        streamed = test_client.post("/v1/models/echo/predict", content=chunks())
        assert streamed.status_code == 413


def test_empty_and_ten_megabyte_strings(make_app: object) -> None:
    app = make_app(auth=False)  # type: ignore[operator]
    big = "é" * (5 * 1024 * 1024)
    with TestClient(app) as test_client:
        response = test_client.post("/v1/models/echo/predict", json={"columns": {"text": ["", big, None]}})
        assert response.json()["columns"]["echo"] == ["", big, None]


def test_request_timeout_is_504(make_app: object) -> None:
    app = make_app(auth=False, request_timeout_s=0.01)  # type: ignore[operator]
    with TestClient(app) as test_client:
        response = test_client.post("/v1/models/slow/predict", json={"rows": [{"a": 1, "b": 1}]})
        assert response.status_code == 504
        assert error_of(response)["code"] == "timeout"


def test_openapi_documents_arrow_bodies_and_auth(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/v1/models/{model}/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {"application/json", ARROW_STREAM}
    assert ARROW_STREAM in predict["responses"]["200"]["content"]
    assert predict["security"] == [{"bearer": []}]
    assert "PredictRequest" in spec["components"]["schemas"]
    assert "ErrorResponse" in spec["components"]["schemas"]
    assert "422" in predict["responses"]
