"""The predict lane: predict requests are answered by the middleware, with the route's behaviour
(auth, formats, body limit, error envelope), without reaching the framework's route."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sqlml.bridge import predict_lane
from sqlml.bridge.predict_lane import PREDICT_PATH
from sqlml.bridge.routes_models import BatchCall
from tests.bridge.conftest import ADMIN


@pytest.fixture
def lane_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any request that reaches the framework's batch routes fails loudly."""

    async def unreachable(cls: type[BatchCall], request: Any) -> BatchCall:
        raise AssertionError("the request reached the FastAPI route")

    monkeypatch.setattr(BatchCall, "of", classmethod(unreachable))


def test_predict_is_answered_by_the_lane(lane_only: None, client: TestClient) -> None:
    response = client.post("/v1/models/sum/predict", json={"columns": {"a": [1.0, None], "b": [2.0, 3.0]}})
    assert response.status_code == 200, response.text
    assert response.json()["columns"]["total"] == [3.0, None]
    assert response.headers["x-sqlml-model"] == "sum" and response.headers["x-sqlml-version"] == "1"
    explain = client.post("/v1/models/sum/explain", json={"rows": [{"a": 1.0, "b": 2.0}]})
    assert explain.status_code == 500  # explain still goes through the route, which the fixture broke


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({}, {"rows": [{"a": 1.0, "b": 2.0}]}, 401, "unauthorized"),
        ({"Authorization": "Bearer sum-token"}, b"{not json", 400, "bad_request"),
        ({"Authorization": "Bearer sum-token"}, {"rows": [{"a": "x", "b": 2.0}]}, 422, "invalid_input"),
    ],
)
def test_lane_errors_use_the_envelope(
    lane_only: None, anon: TestClient, headers: dict[str, str], body: Any, status: int, code: str
) -> None:
    if isinstance(body, bytes):
        response = anon.post("/v1/models/sum/predict", content=body, headers=headers)
    else:
        response = anon.post("/v1/models/sum/predict", json=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    metrics = anon.get("/metrics").text
    assert f'sqlml_errors_total{{code="{code}"}} 1.0' in metrics


def test_lane_respects_the_body_limit(lane_only: None, make_app: Callable[..., FastAPI]) -> None:
    with TestClient(make_app(max_body_bytes=1024), headers=ADMIN, raise_server_exceptions=False) as client:
        response = client.post("/v1/models/sum/predict", json={"columns": {"a": [1.0] * 500, "b": [1.0] * 500}})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


def test_an_unexpected_failure_in_the_lane_is_a_500_envelope(
    monkeypatch: pytest.MonkeyPatch, client: TestClient
) -> None:
    async def broken(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(predict_lane, "answer_predict", broken)
    response = client.post("/v1/models/sum/predict", json={"rows": [{"a": 1.0, "b": 2.0}]})
    assert response.status_code == 500
    assert response.json()["error"] == {
        "code": "internal_error",
        "message": "internal error: RuntimeError",
        "hint": "see the bridge log",
        "detail": {},
    }


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/v1/models/sum/predict", "sum"),
        ("/v1/models/sum:production/predict", "sum:production"),
        ("/v1/models/sum/predict/", None),
        ("/v1/models/a/b/predict", None),
        ("/v1/models/sum/explain", None),
    ],
)
def test_the_lane_takes_exactly_the_predict_path(path: str, model: str | None) -> None:
    match = PREDICT_PATH.fullmatch(path)
    assert (match.group(1) if match else None) == model
