"""Issue #14: error bodies are bounded in size and say nothing about the bridge's file system.

An error that quoted the caller's 10 MB value answered with 10 MB; an XGBoost failure carried
libxgboost's native stack trace, with the install path of every frame. These tests send both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from sqlml.bridge.app import create_app
from sqlml.bridge.registry import Registry
from sqlml.bridge.runtimes import register_runtime
from sqlml.bridge.settings import BridgeSettings
from sqlml.errors import MAX_DETAIL_BYTES, MAX_TEXT_CHARS, InvalidInput, SqlmlError
from tests.bridge import sqlml_test_fakes as fakes

TEN_MB = "x" * (10 * 1024 * 1024)
ADMIN = {"Authorization": "Bearer admin-token"}
LEAKS = ("[bt]", "Stack trace", "site-packages", "/usr/", "libxgboost.so(")


def xgboost_like_text(artifact: Path) -> str:
    """What libxgboost's errors look like: a source path, then native frames with install paths."""
    return (
        f"[12:00:00] /workspace/src/predictor/cpu_predictor.cc:318: Check failed: model {artifact}/model.json\n"
        "Stack trace:\n"
        "  [bt] (0) /usr/lib/python3/site-packages/xgboost/lib/libxgboost.so(+0x22dbbc) [0x7f0e1c42dbbc]\n"
        "  [bt] (1) /usr/lib/python3/site-packages/xgboost/lib/libxgboost.so(XGBoosterPredict+0x2c) [0x7f0e1c]\n"
    )


class NativeCrashRuntime(fakes.SumRuntime):
    """A runtime whose library fails the way XGBoost's does, quoting its artifact path in the store."""

    name = "fake_native_crash"

    def predict(self, batch: pa.Table) -> pa.Table:
        raise RuntimeError(xgboost_like_text(self.path))


register_runtime(NativeCrashRuntime.name, f"{__name__}:{NativeCrashRuntime.__name__}")


@pytest.fixture
def store(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "store")
    fakes.publish(registry, "sum", alias="staging")
    fakes.publish(registry, "crash", NativeCrashRuntime.name)
    fakes.publish_xgboost(registry, "lead")
    return registry


@pytest.fixture
def client(store: Registry) -> Iterator[TestClient]:
    settings = {"store": store.url, "tokens": {"admin-token": ["admin"]}}
    app = create_app(BridgeSettings.model_validate(settings))
    with TestClient(app, headers=ADMIN, raise_server_exceptions=False) as test_client:
        yield test_client


TEN_MB_REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "alias in a body": ("/v1/models/sum/rollback", {"alias": TEN_MB}),
    "column name": ("/v1/models/sum/predict", {"columns": {TEN_MB: [1.0]}}),
    "model name in a job spec": ("/v1/jobs", {"model": TEN_MB, "task": "regression", "target": "y"}),
}


@pytest.mark.parametrize(("path", "body"), list(TEN_MB_REQUESTS.values()), ids=list(TEN_MB_REQUESTS))
def test_a_ten_megabyte_value_gets_a_small_error(client: TestClient, path: str, body: dict[str, Any]) -> None:
    response = client.post(path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text[:500]
    assert len(response.content) < 8 * 1024
    assert set(response.json()["error"]) == {"code", "message", "hint", "detail"}


def test_to_dict_bounds_message_hint_and_detail() -> None:
    error = InvalidInput(
        "bad " + TEN_MB,
        hint=TEN_MB,
        detail={"column": TEN_MB, "errors": [{"loc": [TEN_MB], "msg": "m"}] * 1000, "count": 3},
    )
    wire = error.to_dict()
    assert len(wire["message"]) == MAX_TEXT_CHARS
    assert wire["message"].startswith("bad x") and wire["message"].endswith("…")
    assert len(wire["hint"]) == MAX_TEXT_CHARS
    assert len(json.dumps(wire["detail"])) <= MAX_DETAIL_BYTES
    assert wire["detail"]["count"] == 3
    assert len(json.dumps(wire)) < 8 * 1024


def test_small_errors_are_unchanged() -> None:
    detail = {"model": "sum", "candidates": ["sun", "sum2"]}
    error = SqlmlError("model failed", hint="retry", detail=detail)
    assert error.to_dict() == {"code": "internal_error", "message": "model failed", "hint": "retry", "detail": detail}


def assert_clean(body: str, store: Registry) -> None:
    for leak in LEAKS:
        assert leak not in body, body
    assert str(Path(store.root)) not in body, body


def test_real_xgboost_failure_answers_without_native_frames(client: TestClient, store: Registry) -> None:
    # libxgboost refuses inf in a DMatrix (explain builds one); JSON 1e999 parses as inf
    body = b'{"rows": [{"f0": 1e999, "f1": 0, "f2": 0, "f3": 0}]}'
    response = client.post("/v1/models/lead/explain", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 500
    message = response.json()["error"]["message"]
    assert "XGBoostError" in message and "inf" in message  # the reason stays
    assert_clean(response.text, store)


def test_native_stack_trace_and_paths_are_stripped(client: TestClient, store: Registry) -> None:
    response = client.post("/v1/models/crash/predict", json={"rows": [{"a": 1, "b": 2}]})
    assert response.status_code == 500
    message = response.json()["error"]["message"]
    assert message.startswith('model "crash" version 1 failed in predict: RuntimeError:')
    assert "cpu_predictor.cc:318: Check failed" in message
    assert_clean(response.text, store)
