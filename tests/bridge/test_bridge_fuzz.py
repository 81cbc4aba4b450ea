"""Property-based fuzzing of the bridge from its own OpenAPI schema: no input yields a 5xx."""

from __future__ import annotations

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sqlml.bridge.app import create_app
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings
from tests.bridge import sqlml_test_fakes as fakes


def _fuzz_app() -> FastAPI:
    import tempfile

    store = tempfile.mkdtemp(prefix="sqlml-fuzz-")
    registry = Registry(store)
    fakes.publish(registry, "sum", alias="production")
    fakes.publish(registry, "sum")
    fakes.publish(registry, "echo", "fake_echo")
    fakes.publish(registry, "forecaster", task="forecast")
    return create_app(BridgeSettings(store=store, tokens={"fuzz": ["admin"]}, request_timeout_s=5.0))


APP = _fuzz_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    case.headers = {**(case.headers or {}), "Authorization": "Bearer fuzz"}
    response = case.call()
    # the statuses, content types and bodies the schema promises (auth probing is tested elsewhere)
    case.validate_response(
        response, checks=[status_code_conformance, content_type_conformance, response_schema_conformance]
    )
    assert response.status_code < 500, (case.method, case.path, case.path_parameters, response.text[:500])
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "hint", "detail"}
