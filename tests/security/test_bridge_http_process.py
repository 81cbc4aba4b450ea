"""Issue #14 against a real `sqlml serve`: uvicorn, real sockets, a real XGBoost model.

The in-process tests drive the ASGI app directly; these check that the same answers come out of
the server: a 401 before an oversize or malformed body is read (and the connection survives it),
derived tokens, reserved aliases, and a libxgboost failure without its native stack trace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from sqlml.bridge.auth import derive_token
from sqlml.bridge.registry import Registry
from tests.bridge import sqlml_test_fakes as fakes
from tests.bridge.conftest import TOKENS, BridgeProcess

pytestmark = pytest.mark.bridge

PARENT = "extension-parent-token"
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    registry = Registry(tmp_path_factory.mktemp("security") / "store")
    fakes.publish(registry, "lead_score")
    fakes.publish(registry, "sentiment", "fake_echo")
    fakes.publish_xgboost(registry, "churn")
    return registry


@pytest.fixture(scope="module")
def bridge(store: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    env = {"SQLML_TOKENS": json.dumps({**TOKENS, PARENT: ["predict:*"]}), "SQLML_MAX_BODY_BYTES": str(MAX_BODY)}
    process = BridgeProcess(store.url, tmp_path_factory.mktemp("logs"), env=env).start()
    yield process
    process.stop()


@pytest.fixture
def http(bridge: BridgeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bridge.url, timeout=10.0) as client:
        yield client


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"x" * (MAX_BODY * 8), json.dumps({"rows": [{"a": "x" * 1000}]}).encode()],
    ids=["malformed", "oversize", "mistyped"],
)
@pytest.mark.parametrize("model", ["lead_score", "no_such_model", "Bad%0AName"])
def test_anonymous_request_is_401_before_the_body(http: httpx.Client, model: str, body: bytes) -> None:
    response = http.post(f"/v1/models/{model}/predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"
    assert http.get("/healthz").status_code == 200  # the server is fine after refusing a body it did not read


def test_derived_token_over_http(http: httpx.Client) -> None:
    token = {"Authorization": f"Bearer {derive_token(PARENT, ['predict:lead_score'], 'analyst')}"}
    scored = http.post("/v1/models/lead_score/predict", json={"rows": [{"a": 1, "b": 2}]}, headers=token)
    assert scored.status_code == 200, scored.text
    refused = http.post("/v1/models/sentiment/predict", json={"rows": [{"text": "x"}]}, headers=token)
    assert refused.status_code == 403
    forged = {"Authorization": token["Authorization"][:-1] + ("0" if token["Authorization"][-1] != "0" else "1")}
    assert http.post("/v1/models/lead_score/predict", json={"rows": []}, headers=forged).status_code == 401


def test_xgboost_failure_over_http_has_no_native_frames(http: httpx.Client, store: Registry) -> None:
    admin = {"Authorization": "Bearer admin-token", "Content-Type": "application/json"}
    body = b'{"rows": [{"f0": 1e999, "f1": 0, "f2": 0, "f3": 0}]}'  # inf: libxgboost refuses it
    response = http.post("/v1/models/churn/explain", content=body, headers=admin)
    assert response.status_code == 500
    assert "XGBoostError" in response.json()["error"]["message"]
    for leak in ("[bt]", "Stack trace", "site-packages", "/usr/", str(store.root)):
        assert leak not in response.text
