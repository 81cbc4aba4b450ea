"""Issue #14: an anonymous API request is answered 401 before anything else looks at it.

Before the auth gate, a malformed body, an oversize body, an unknown model or a bad name got
400 / 404 / 413 / 422 first, telling an anonymous caller which models exist and what the routes
accept. These tests send each of those, without a valid token, to every `/v1` route family.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sqlml.bridge.app import create_app
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings
from tests.bridge import sqlml_test_fakes as fakes

TOKENS = {"admin-token": ["admin"], "sum-token": ["predict:sum"]}
MAX_BODY = 4096
OVERSIZE = b"x" * (MAX_BODY * 4)

# (method, path, request keyword arguments): each would fail validation, routing or the body
# limit if it were authenticated.
ATTACKS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/models", {}),
    ("GET", "/v1/models/nope", {}),
    ("GET", "/v1/models/Bad%0AName", {}),
    ("GET", "/v1/models/sum/versions/not-a-number", {}),
    ("POST", "/v1/models/sum/predict", {"content": b"{not json"}),
    ("POST", "/v1/models/sum/predict", {"content": OVERSIZE}),
    ("POST", "/v1/models/nope/predict", {"json": {"rows": []}}),
    ("POST", "/v1/models/%2E%2E/predict", {"json": {"rows": []}}),
    ("POST", "/v1/models/sum/explain?top_k=0", {"content": b"{not json"}),
    ("POST", "/v1/models/sum/explain", {"content": OVERSIZE}),
    ("POST", "/v1/models/sum/forecast", {"json": {"horizon": "many"}}),
    ("PUT", "/v1/models/sum/aliases/latest", {"content": b"[]"}),
    ("DELETE", "/v1/models/nope/aliases/x%00", {}),
    ("POST", "/v1/models/sum/rollback", {"json": {}}),
    ("PUT", "/v1/models/nope/pin", {}),
    ("DELETE", "/v1/models/sum/pin", {}),
    ("POST", "/v1/jobs", {"content": b"{not json"}),
    ("POST", "/v1/jobs", {"content": OVERSIZE}),
    ("GET", "/v1/jobs", {}),
    ("GET", "/v1/jobs/no-such-job", {}),
    ("GET", "/v1/jobs/no-such-job/logs", {}),
    ("POST", "/v1/jobs/no-such-job/cancel", {}),
    ("POST", "/v1/uploads", {"content": b"{not json"}),
    ("POST", "/v1/uploads/no-such-upload/rows", {"content": OVERSIZE}),
    ("GET", "/v1/no-such-route", {}),
    ("PATCH", "/v1/models/sum/predict", {}),
]
NO_VALID_TOKEN = [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic c3VtOnN1bQ=="}]


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    registry = Registry(tmp_path / "store")
    fakes.publish(registry, "sum")
    fakes.publish(registry, "echo", "fake_echo")
    settings = {"store": registry.url, "tokens": TOKENS, "max_body_bytes": MAX_BODY, "jobs_db": str(tmp_path / "jobs")}
    return create_app(BridgeSettings.model_validate(settings))


@pytest.fixture
def anon(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("headers", NO_VALID_TOKEN, ids=["none", "unknown", "basic"])
@pytest.mark.parametrize(("method", "path", "kwargs"), ATTACKS, ids=[f"{m} {p}" for m, p, _ in ATTACKS])
def test_unauthenticated_api_request_is_401_first(
    anon: TestClient, method: str, path: str, kwargs: dict[str, Any], headers: dict[str, str]
) -> None:
    response = anon.request(method, path, headers=headers, **kwargs)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert set(response.json()) == {"error"}
    assert response.json()["error"]["code"] == "unauthorized"


def test_streamed_oversize_body_without_token_is_401(anon: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the body limit would only see it while reading
        for _ in range(10):
            yield b"x" * 1000

    assert anon.post("/v1/models/sum/predict", content=chunks()).status_code == 401


def test_the_gate_answers_without_reading_the_body(app: FastAPI) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read before authentication")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/models/sum/predict",
        "raw_path": b"/v1/models/sum/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"authorization", b"Bearer nope")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"])
def test_health_and_docs_stay_open(anon: TestClient, path: str) -> None:
    assert anon.get(path).status_code == 200


def test_authenticated_requests_still_get_validation_and_scope_errors(anon: TestClient) -> None:
    sum_token = {"Authorization": "Bearer sum-token"}
    malformed = anon.post("/v1/models/sum/predict", content=b"{not json", headers=sum_token)
    assert (malformed.status_code, malformed.json()["error"]["code"]) == (400, "bad_request")
    oversize = anon.post("/v1/models/sum/predict", content=OVERSIZE, headers=sum_token)
    assert oversize.status_code == 413
    other_model = anon.post("/v1/models/echo/predict", json={"rows": [{"text": "x"}]}, headers=sum_token)
    assert (other_model.status_code, other_model.json()["error"]["code"]) == (403, "forbidden")
    unknown = anon.post("/v1/models/nope/predict", json={"rows": []}, headers={"Authorization": "Bearer admin-token"})
    assert unknown.status_code == 404


def test_auth_off_opens_the_api(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "store")
    fakes.publish(registry, "sum")
    app = create_app(BridgeSettings.model_validate({"store": registry.url, "auth": False}))
    with TestClient(app) as client:
        assert client.post("/v1/models/sum/predict", json={"rows": [{"a": 1, "b": 2}]}).status_code == 200
