"""The predict lane: `POST /v1/models/{model}/predict` served straight from the ASGI scope.

Predict is the bridge's hot route: SQL engines send it many small requests, and each one pays for
the framework's per-request layers (routing over every route, dependency solving, exception
middleware); in py-spy samples of bench/batching.py the event loop's time per request about
halved with this lane. `sqlml.bridge.app.BridgeApp` puts it in front of the framework's own
middleware, behind only the body limit. It recognises the one path and hands it to
`routes_models.answer_predict`, the same code the FastAPI route runs, with the same auth, body
limit, batcher, metrics and error envelope. Every other request goes on to the app unchanged. The
FastAPI route stays: it documents the endpoint in OpenAPI, and it serves any predict request whose
path the lane does not match exactly.
"""

from __future__ import annotations

import logging
import re

from fastapi.responses import Response

from sqlml.bridge.routes_models import BatchCall, answer_predict
from sqlml.bridge.state import ASGIApp, BridgeState, Receive, Scope, Send, error_reply
from sqlml.errors import SqlmlError

log = logging.getLogger("sqlml.bridge")

PREDICT_PATH = re.compile(r"/v1/models/([^/]+)/predict")


class PredictLane:
    def __init__(self, app: ASGIApp, state: BridgeState):
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = PREDICT_PATH.fullmatch(scope["path"])
            if match is not None:
                response = await self._answer(match.group(1), scope, receive)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _answer(self, model: str, scope: Scope, receive: Receive) -> Response:
        try:
            return await answer_predict(self.state, model, await _batch_call(scope, receive))
        except SqlmlError as error:
            return error_reply(self.state.metrics, error)
        except Exception as exc:  # the app's last-resort handler, for this lane
            log.exception("unexpected error on POST %s", scope["path"])
            internal = SqlmlError(f"internal error: {type(exc).__name__}", hint="see the bridge log")
            return error_reply(self.state.metrics, internal)


async def _batch_call(scope: Scope, receive: Receive) -> BatchCall:
    headers: dict[bytes, bytes] = {}
    for key, value in scope["headers"]:
        headers.setdefault(key, value)  # the first of repeated headers, as Starlette's headers.get
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break

    def text(name: bytes) -> str | None:
        value = headers.get(name)
        return None if value is None else value.decode("latin-1")

    body = b"".join(chunks)
    return BatchCall(text(b"authorization"), text(b"content-type"), text(b"accept") or "", body, receive)
