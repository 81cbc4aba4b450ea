"""`sqlml serve` as the README starts it, with no tokens configured: it serves with an admin token it
made once (kept in $SQLML_HOME/bridge-token, owner-only) and prints the one SQL line that stores it,
instead of answering every call with 401; a restart reuses the token, so the stored one holds."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.bridge


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_once(home: Path) -> tuple[str, str]:
    """Start the bridge, read the token it prints, check it answers, stop it; (token, SQL line)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("SQLML_TOKENS", "SQLML_TOKENS_FILE", "SQLML_AUTH")}
    env["SQLML_HOME"] = str(home)
    command = [str(Path(sys.executable).parent / "sqlml"), "serve", "--port", str(port), "--store", str(home / "m")]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        sql = ""
        deadline = time.monotonic() + 60
        while "set_token" not in sql:
            line = process.stderr.readline()
            assert line or process.poll() is None, "the bridge exited"
            sql = line if "set_token" in line else sql
            assert time.monotonic() < deadline
        token = re.search(r"ml\.set_token\('([^']+)', NULL, 'http://127\.0\.0\.1:\d+'\);", sql)
        assert token is not None, sql
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert httpx.get(url + "/v1/models", timeout=5).status_code == 401
        answer = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {token.group(1)}"}, timeout=5)
        assert answer.status_code == 200, answer.text
        return token.group(1), sql.strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_first_start_makes_a_token_and_says_how_to_store_it(tmp_path: Path) -> None:
    token, sql = _serve_once(tmp_path)
    assert sql.startswith("PostgreSQL: SELECT ml.set_token(")
    path = tmp_path / "bridge-token"
    assert path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _serve_once(tmp_path)[0] == token  # a restart keeps it
