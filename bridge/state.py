"""What the bridge's HTTP modules share: the state one app holds, the ASGI types, and the one error
envelope. The app (`sqlml.bridge.app`) builds these; the route modules and the predict lane read
them from here, so no module of the HTTP layer imports the app (import-linter keeps it so)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from sqlml.bridge.auth import TokenAuth
from sqlml.bridge.batcher import DynamicBatcher
from sqlml.bridge.host import ModelHost, Preload
from sqlml.bridge.metrics import BridgeMetrics
from sqlml.bridge.model_turns import ModelTurns
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings
from sqlml.errors import SqlmlError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The framework's own HTTP errors, in the envelope's codes.
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


@dataclass
class BridgeState:
    settings: BridgeSettings
    registry: Registry
    host: ModelHost
    metrics: BridgeMetrics
    batcher: DynamicBatcher
    turns: ModelTurns  # explain and forecast: one call at a time per version, queued on the loop
    auth: TokenAuth
    preload: Preload  # started by the lifespan


def bridge_state(request: Request) -> BridgeState:
    state: BridgeState = request.app.state.bridge
    return state


def error_response(error: SqlmlError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error.to_dict()}, status_code=error.status, headers=headers)


def error_reply(metrics: BridgeMetrics, error: SqlmlError) -> JSONResponse:
    """The envelope for a failed request, counted by code (401s also name the auth scheme)."""
    metrics.error(error.code)
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return error_response(error, headers)
