"""The bridge service: `create_app(settings)` builds the FastAPI app that hosts the models.

This module wires the parts together (registry, model host, batcher, auth, metrics), installs the
one error envelope `{"error": {"code", "message", "hint", "detail"}}` for every failure, turns
away unauthenticated API requests, limits body size, and serves health, readiness and `/metrics`.
At start-up it preloads the models `settings.preload` names, in the background: `/healthz` answers
at once, `/readyz` says 503 until every preload has loaded or failed.
Model routes live in `routes_models`; the hot predict route is also served by `predict_lane`, a
layer in front of the framework's middleware.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from sqlml.bridge import api_schemas
from sqlml.bridge.auth import TokenAuth
from sqlml.bridge.batcher import DynamicBatcher
from sqlml.bridge.host import ModelHost, Preload
from sqlml.bridge.jobs.routes_jobs import include_job_routes
from sqlml.bridge.metrics import BridgeMetrics
from sqlml.bridge.model_turns import ModelTurns
from sqlml.bridge.predict_lane import PredictLane
from sqlml.bridge.registry import Registry
from sqlml.bridge.routes_import import router as import_router
from sqlml.bridge.routes_models import router
from sqlml.bridge.settings import BridgeSettings
from sqlml.bridge.state import (
    HTTP_CODES,
    ASGIApp,
    BridgeState,
    Message,
    Receive,
    Scope,
    Send,
    error_reply,
    error_response,
)
from sqlml.errors import PayloadTooLarge, SqlmlError, Unauthorized, Unavailable, bounded_text

log = logging.getLogger("sqlml.bridge")


def load_plugins(modules: list[str]) -> None:
    """Import plugin modules (they register runtimes with `sqlml.bridge.runtimes.register_runtime`)."""
    for name in modules:
        importlib.import_module(name)


def create_app(settings: BridgeSettings | None = None) -> FastAPI:
    settings = settings or BridgeSettings.load()
    load_plugins(settings.plugins)
    metrics = BridgeMetrics()
    registry = Registry(settings.store)
    host = ModelHost(
        registry,
        memory_budget=settings.memory_budget,
        events=metrics,
        model_processes=settings.model_processes,
        load_timeout_s=settings.load_timeout_s,
    )
    for name in settings.pin:
        host.pin(name)
    metrics.watch_host(lambda: len(host.loaded()), host.loaded_bytes, settings.memory_budget)
    state = BridgeState(
        settings=settings,
        registry=registry,
        host=host,
        metrics=metrics,
        batcher=DynamicBatcher(
            host,
            metrics,
            enabled=settings.batching,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_pending=settings.max_pending_per_model,
        ),
        turns=ModelTurns(settings.max_pending_per_model),
        auth=TokenAuth(settings.tokens, enabled=settings.auth),
        preload=Preload(host, [*settings.preload, *settings.pin]),  # pinned models load at start too
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.preload.start()
        yield
        state.preload.stop()
        await state.batcher.close()
        for name in {name for name, _ in host.loaded()}:
            host.unload(name)

    app = BridgeApp(
        title="sqlml bridge",
        version="1",
        summary="Hosts model versions for SQL engines: predict, explain, forecast, lifecycle.",
        lifespan=lifespan,
    )
    app.state.bridge = state
    _install_error_handlers(app, metrics)
    _add_health_routes(app, state)

    app.include_router(router)
    app.include_router(import_router)
    include_job_routes(app, jobs_db=settings.jobs_db)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class BridgeApp(FastAPI):
    """FastAPI with three layers in front of the framework's own middleware: the auth gate, the body
    limit, then the predict lane (`sqlml.bridge.predict_lane`), so the hot route passes through no
    framework layer."""

    def build_middleware_stack(self) -> ASGIApp:
        state: BridgeState = self.state.bridge
        framework = super().build_middleware_stack()
        limited = BodyLimitMiddleware(PredictLane(framework, state), state.settings.max_body_bytes)
        return AuthGate(limited, state)


def _install_error_handlers(app: FastAPI, metrics: BridgeMetrics) -> None:
    def respond(error: SqlmlError) -> JSONResponse:
        return error_reply(metrics, error)

    async def on_sqlml_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SqlmlError)
        return respond(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"])
        error = SqlmlError.from_dict({"code": "bad_request", "message": f"invalid request: {where}: {first['msg']}"})
        error.detail = {"errors": errors}
        return respond(error)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = HTTP_CODES.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal_error")
        metrics.error(code)
        body: dict[str, Any] = {"code": code, "message": bounded_text(str(exc.detail)), "hint": None, "detail": {}}
        return JSONResponse({"error": body}, status_code=exc.status_code, headers=exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return respond(SqlmlError(f"internal error: {type(exc).__name__}", hint="see the bridge log"))

    app.add_exception_handler(SqlmlError, on_sqlml_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


API_PREFIX = "/v1"


def is_api_path(path: str) -> bool:
    """The routes behind auth; health, metrics and the OpenAPI docs stay open."""
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


class AuthGate:
    """401 for an API request without a valid bearer token, before its body is read or validated,
    so an anonymous caller learns nothing from 400s, 404s or 413s. Scopes (403) are the routes' job."""

    def __init__(self, app: ASGIApp, state: BridgeState):
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        auth = self.state.auth
        if auth.enabled and scope["type"] == "http" and is_api_path(scope["path"]):
            try:
                auth.scopes(_first_header(scope, b"authorization"))
            except Unauthorized as error:
                await error_reply(self.state.metrics, error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _first_header(scope: Scope, name: bytes) -> str | None:
    """The first of repeated headers, as Starlette's `headers.get` (and so the routes) read it."""
    for key, value in scope.get("headers") or []:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


class BodyLimitMiddleware:
    """413 for bodies over the limit: by `Content-Length` up front, else while streaming."""

    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            error = PayloadTooLarge(f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
            await error_response(error)(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


# -- health ----------------------------------------------------------------------------------


def _add_health_routes(app: FastAPI, state: BridgeState) -> None:
    @app.get("/healthz", response_model=api_schemas.Health, tags=["health"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["health"],
        responses={503: {"model": api_schemas.ErrorResponse, "description": "store unreadable, or models loading"}},
    )
    async def readyz() -> dict[str, Any]:
        """Readiness: the model store is readable and the start-up preload is done (a preload that
        failed is listed in `preload_failed` and does not keep the bridge unready)."""
        try:
            await anyio.to_thread.run_sync(state.registry.fs.ls, state.registry.root)
        except Exception as exc:
            raise Unavailable("model store is not readable", detail={"reason": type(exc).__name__}) from None
        return readiness(state)

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
    )
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(state.metrics.render(), media_type=state.metrics.content_type)


class PreloadFailure(BaseModel):
    model: str
    error: str


class Readiness(api_schemas.Health):
    models: list[str] = Field(default_factory=list, description='loaded versions, as "name:version"')
    preload_failed: list[PreloadFailure] = Field(default_factory=list)


def readiness(state: BridgeState) -> dict[str, Any]:
    """The ready answer, or `Unavailable` naming the models the start-up preload is still loading."""
    loaded = [f"{name}:{version}" for name, version in state.host.loaded()]
    failed = [{"model": ref, "error": error} for ref, error in state.preload.failed().items()]
    loading = state.preload.loading()
    if loading:
        raise Unavailable(
            f"models still loading: {', '.join(loading)}",
            hint="the bridge preloads them at start-up (--preload, SQLML_PRELOAD); retry in a moment",
            detail={"loading": loading, "loaded": loaded, "failed": failed},
        )
    return {"status": "ready", "loaded_models": len(loaded), "models": loaded, "preload_failed": failed}


# -- OpenAPI ---------------------------------------------------------------------------------


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the JSON bodies routes read by hand (they also accept Arrow) and auth."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (api_schemas.PredictRequest, api_schemas.ExplainRequest, api_schemas.EvaluateRequest):
        body: dict[str, Any] = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in schema.get("paths", {}).items():
        if path.startswith("/v1/"):
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
    app.openapi_schema = schema
    return schema
