"""A stub of the sqlml bridge's HTTP API on the standard library's http.server, for tests.

It speaks the real contract (predict in rows or columns form, explain, forecast, models, aliases,
the error envelope) for a fake `lead` model (inputs a, b -> probability) and a fake `sentiment`
model, and it can be told to misbehave: answer slowly, answer with a body that is not JSON, or
reject every row whose `a` is a string. Everything it received is kept in `requests` so tests can
assert on batching.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LEAD_SIGNATURE = {
    "inputs": [{"name": "a", "type": "double", "description": ""}, {"name": "b", "type": "bigint", "description": ""}],
    "outputs": [{"name": "probability", "type": "double", "description": ""}],
}
SENTIMENT_SIGNATURE = {
    "inputs": [{"name": "text", "type": "text", "description": ""}],
    "outputs": [{"name": "label", "type": "text", "description": ""}, {"name": "confidence", "type": "double"}],
}


@dataclass
class StubBehaviour:
    delay_s: float = 0.0
    malformed: bool = False
    required_token: str | None = None
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    aliases: dict[str, int] = field(default_factory=lambda: {"production": 1})
    stopped: bool = False  # set on shutdown: kept-alive connections then close like a dead server's


def lead_probability(row: dict[str, Any]) -> float | None:
    if row.get("a") is None or row.get("b") is None:
        return None
    return round(float(row["a"]) * 0.1 + float(row["b"]) * 0.01, 6)


def sentiment_of(text: str | None) -> dict[str, Any]:
    if text is None:
        return {"label": None, "confidence": None}
    positive = "good" in text or "great" in text
    return {"label": "positive" if positive else "negative", "confidence": 0.9 if positive else 0.8}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like uvicorn
    behaviour: StubBehaviour

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, payload: Any, raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, hint: str | None = None) -> None:
        self._send(status, {"error": {"code": code, "message": message, "hint": hint, "detail": {}}})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        if self.behaviour.stopped:
            self.close_connection = True
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._error(400, "bad_request", "body is not JSON")
            return
        behaviour = self.behaviour
        behaviour.requests.append((method, self.path, body))
        if behaviour.delay_s:
            time.sleep(behaviour.delay_s)
        if behaviour.malformed:
            self._send(200, None, raw=b"<html>not json</html>")
            return
        if behaviour.required_token and self.headers.get("Authorization") != f"Bearer {behaviour.required_token}":
            self._error(401, "unauthorized", "missing or invalid bearer token")
            return
        parts = self.path.strip("/").split("/")
        if self.path == "/readyz":
            self._send(200, {"status": "ready"})
        elif self.path == "/v1/models":
            self._send(200, {"models": self._models()})
        elif len(parts) == 4 and parts[:2] == ["v1", "models"]:
            self._model_call(parts[2], parts[3], body)
        elif len(parts) == 5 and parts[3] == "aliases" and method == "PUT":
            behaviour.aliases[parts[4]] = int(body["version"])
            self._send(200, {"alias": parts[4], "version": int(body["version"])})
        else:
            self._error(404, "not_found", f"no route {self.path}")

    def _models(self) -> list[dict[str, Any]]:
        common = {"versions": [1, 2], "aliases": self.behaviour.aliases, "metrics": {}, "loaded": False}
        return [
            {"name": "lead", "version": 1, "task": "classification", "runtime": "xgboost",
             "description": "stub lead model", "signature": LEAD_SIGNATURE, **common},
            {"name": "sentiment", "version": 1, "task": "sentiment", "runtime": "sentiment",
             "description": "stub sentiment", "signature": SENTIMENT_SIGNATURE, **common},
            {"name": "power", "version": 1, "task": "forecast", "runtime": "forecast", "description": "",
             "signature": {"inputs": [], "outputs": []}, **common},
        ]  # fmt: skip

    def _model_call(self, model_ref: str, action: str, body: Any) -> None:
        name = model_ref.split(":")[0]
        if name not in ("lead", "sentiment", "power"):
            self._error(404, "model_not_found", f'model "{name}" not found', hint="did you mean 'lead'?")
            return
        if action == "rollback":
            self._send(200, {"alias": body["alias"], "version": 1})
            return
        if action == "forecast":
            rows = [
                {"series": "house", "ts": f"2010-11-26T{h:02d}:00:00", "quantile": q, "value": float(h)}
                for h in range(body["horizon"])
                for q in body["quantiles"]
            ]
            self._send(200, {"model": name, "version": 1, "rows": rows})
            return
        rows = body.get("rows")
        columns = body.get("columns")
        if rows is None and columns is not None:
            count = len(next(iter(columns.values())))
            rows = [{k: v[i] for k, v in columns.items()} for i in range(count)]
        if name == "sentiment":
            outputs = [sentiment_of(r.get("text")) for r in rows]
        else:
            for row in rows:
                extra = set(row) - {"a", "b"}
                if extra:
                    self._error(422, "invalid_input", f'model "lead" has no input column "{sorted(extra)[0]}"',
                                hint="expected columns: a, b")  # fmt: skip
                    return
                if isinstance(row.get("a"), str):
                    self._error(422, "invalid_input", 'column "a" of model "lead" must be a number, got text')
                    return
            if rows and any("a" not in r for r in rows):
                self._error(422, "invalid_input", 'model "lead" is missing input column "a"', hint="expected a, b")
                return
            outputs = [{"probability": lead_probability(r)} for r in rows]
        if action == "explain":
            explained = [
                {"contributions": [{"feature": "a", "value": r.get("a"), "contribution": 0.5},
                                   {"feature": "b", "value": r.get("b"), "contribution": -0.1}][: body["top_k"]],
                 "bias": 0.1, "margin": 0.5}
                for r in rows
            ]  # fmt: skip
            self._send(200, {"rows": explained})
        elif columns is not None:
            keys = outputs[0].keys() if outputs else []
            self._send(200, {"model": name, "version": 1, "columns": {k: [o[k] for o in outputs] for k in keys}})
        else:
            self._send(200, {"model": name, "version": 1, "rows": outputs})


@contextmanager
def stub_bridge(behaviour: StubBehaviour | None = None) -> Iterator[tuple[str, StubBehaviour]]:
    """Run the stub on a free port; yields its URL and the behaviour object (mutable while running)."""
    behaviour = behaviour or StubBehaviour()
    handler = type("Handler", (_Handler,), {"behaviour": behaviour})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", behaviour
    finally:
        behaviour.stopped = True
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
