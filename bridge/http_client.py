"""`BridgeClient`: the `ModelClient` interface over HTTP, so engines give the same rows as embedded.

Batches travel as Arrow IPC streams over one kept-alive connection pool. Errors from the bridge are
rebuilt with their codes (`SqlmlError.from_dict`); a bridge that is down fails fast with
`Unavailable` naming the URL, and a slow one with `BridgeTimeout` after `timeout` seconds.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pyarrow as pa

from sqlml.bridge.manifest import Manifest
from sqlml.bridge.wire import ARROW_STREAM, read_ipc, table_to_json, write_ipc
from sqlml.errors import BridgeTimeout, SqlmlError, Unavailable

NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


class BridgeClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        headers = {"User-Agent": "sqlml-bridge-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # httpx writes headers and body separately: without TCP_NODELAY, Nagle plus the server's
        # delayed ACK stall every kept-alive request by ~40 ms
        transport = httpx.HTTPTransport(socket_options=NO_DELAY)
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BridgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ModelClient -----------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        models: list[dict[str, Any]] = self._json("GET", "/v1/models")["models"]
        return models

    def describe(self, model: str) -> Manifest:
        return Manifest.model_validate(self._json("GET", f"/v1/models/{model}")["manifest"])

    def predict(self, model: str, batch: pa.Table) -> pa.Table:
        return self._arrow(f"/v1/models/{model}/predict", batch)

    def explain(self, model: str, batch: pa.Table, top_k: int = 5) -> pa.Table:
        return self._arrow(f"/v1/models/{model}/explain", batch, params={"top_k": top_k})

    def forecast(
        self,
        model: str,
        series: list[str] | None,
        horizon: int,
        quantiles: list[str],
        future: pa.Table | None = None,
        history: pa.Table | None = None,
    ) -> pa.Table:
        body: dict[str, Any] = {"series": series, "horizon": horizon, "quantiles": quantiles}
        for name, rows in (("future", future), ("history", history)):
            if rows is not None:
                body[name] = table_to_json(_without_decimals(rows), "rows")["rows"]
        with self._request("POST", f"/v1/models/{model}/forecast", json=body, headers={"Accept": ARROW_STREAM}) as r:
            return read_ipc(r.content)

    def evaluate(self, model: str, batch: pa.Table) -> dict[str, Any]:
        headers = {"Content-Type": ARROW_STREAM}
        with self._request("POST", f"/v1/models/{model}/evaluate", content=write_ipc(batch), headers=headers) as r:
            payload: dict[str, Any] = r.json()
            return payload

    # -- lifecycle (admin token) -------------------------------------------------------------

    def set_alias(self, model: str, alias: str, version: int) -> dict[str, int]:
        aliases: dict[str, int] = self._json("PUT", f"/v1/models/{model}/aliases/{alias}", json={"version": version})[
            "aliases"
        ]
        return aliases

    def rollback(self, model: str, alias: str = "production") -> int:
        return int(self._json("POST", f"/v1/models/{model}/rollback", json={"alias": alias})["version"])

    def pin(self, model: str) -> None:
        self._json("PUT", f"/v1/models/{model}/pin")

    def unpin(self, model: str) -> None:
        self._json("DELETE", f"/v1/models/{model}/pin")

    def request_json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Any other route, answered in JSON (DuckDB's ml.train: uploads and jobs), with the same errors."""
        return self._json(method, path, **kwargs)

    def ready(self) -> bool:
        try:
            with self._request("GET", "/readyz"):
                return True
        except SqlmlError:
            return False

    # -- internals -------------------------------------------------------------------------

    def _arrow(self, path: str, batch: pa.Table, params: dict[str, Any] | None = None) -> pa.Table:
        headers = {"Content-Type": ARROW_STREAM, "Accept": ARROW_STREAM}
        with self._request("POST", path, content=write_ipc(batch), headers=headers, params=params) as response:
            return read_ipc(response.content)

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with self._request(method, path, **kwargs) as response:
            payload: dict[str, Any] = response.json()
            return payload

    @contextmanager
    def _request(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise BridgeTimeout(
                f"sqlml bridge at {self.url} did not answer within {self.timeout:g} s",
                hint="the bridge may be overloaded or stuck; raise the client timeout if the model is slow",
                detail={"url": self.url},
            ) from None
        except httpx.ConnectError as exc:
            raise Unavailable(
                f"sqlml bridge at {self.url} is unreachable ({_reason(exc)})",
                hint="is `sqlml serve` running there?",
                detail={"url": self.url},
            ) from None
        except httpx.TransportError as exc:  # connection dropped mid-request (bridge killed or restarted)
            raise Unavailable(
                f"sqlml bridge at {self.url} dropped the connection ({_reason(exc)})",
                hint="the bridge may have been restarted; retry",
                detail={"url": self.url},
            ) from None
        if response.status_code >= 400:
            raise _error_from(response)
        yield response


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text[:200]


def _error_from(response: httpx.Response) -> SqlmlError:
    try:
        payload = response.json()
        error = payload["error"]
        if not isinstance(error, dict):
            raise TypeError
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return SqlmlError.from_dict(
            {
                "code": "unavailable" if response.status_code >= 500 else "bad_request",
                "message": f"bridge answered HTTP {response.status_code}: {response.text[:200]}",
            }
        )
    return SqlmlError.from_dict(error, response.status_code)


def _without_decimals(table: pa.Table) -> pa.Table:
    """Decimal columns as doubles, which JSON carries (forecast rows are numbers, not money)."""
    for i, kind in enumerate(table.schema.types):
        if pa.types.is_decimal(kind):
            table = table.set_column(i, table.schema.names[i], table.column(i).cast(pa.float64()))
    return table
