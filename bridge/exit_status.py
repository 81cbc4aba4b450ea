"""How a child process ended, in words, for the errors of model processes and training workers."""

from __future__ import annotations

import signal


def describe_exit(code: int | None) -> str:
    """`Popen.returncode` in words: "was killed by SIGKILL", "exited with status 1"."""
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"
