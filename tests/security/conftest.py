"""Fixtures of the attack tests: the PostgreSQL tests' real server, extension and bridge process
(tests/postgres/conftest.py), plus throw-away login roles and an HTTP listener that records what
reaches it, the attacker's own server."""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest

from tests.postgres.conftest import bridge_store, bridge_url, conn, database, installed_extension  # noqa: F401


@dataclass
class Captured:
    """Every request a listener received: request line, headers and body, as bytes."""

    url: str
    requests: list[bytes] = field(default_factory=list)

    def everything(self) -> bytes:
        return b"\n".join(self.requests)


@pytest.fixture
def listener() -> Iterator[Captured]:
    """An attacker's HTTP server on loopback: records each request and answers 401 in the bridge's
    envelope (so that callers fail fast), closing the connection each time."""

    captured = Captured(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            captured.requests.append(self.requestline.encode() + b"\n" + bytes(self.headers) + body)
            reply = b'{"error": {"code": "unauthorized", "message": "who are you", "hint": null, "detail": {}}}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_POST = do_PUT = _record

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    captured.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield captured
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class LoginRole:
    name: str
    dsn: str

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True)


@pytest.fixture
def make_role(conn: psycopg.Connection, database: str) -> Iterator[object]:  # noqa: F811
    """`make_role(*groups)`: a new LOGIN role, member of the given roles, dropped afterwards."""
    made: list[str] = []

    def make(*groups: str) -> LoginRole:
        name = f"sqlml_sec_{uuid.uuid4().hex[:8]}"
        conn.execute(f"CREATE ROLE {name} LOGIN")
        for group in groups:
            conn.execute(f"GRANT {group} TO {name}")
        made.append(name)
        return LoginRole(name, f"{database} user={name}".replace("user=postgres", ""))

    yield make
    for name in reversed(made):
        for table in ("model_grants", "bridge_tokens"):  # rows that name the role's oid
            conn.execute(f"DELETE FROM sqlml_private.{table} WHERE role_oid = '{name}'::regrole")
        conn.execute(f"DROP OWNED BY {name} CASCADE")
        conn.execute(f"DROP ROLE {name}")
