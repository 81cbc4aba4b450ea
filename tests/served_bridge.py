"""A `sqlml serve` process for tests that need a real bridge: started with a command line, waited
for until /healthz answers, stopped with SIGTERM (then SIGKILL)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


class ServedBridge:
    def __init__(self, command: list[str], url: str, log: Path, env: Mapping[str, str] | None = None, **popen: object):
        self.url = url
        self._log = log.open("ab")
        self.process = subprocess.Popen(  # type: ignore[call-overload]
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT, **popen
        )

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the bridge exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the bridge did not answer within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
