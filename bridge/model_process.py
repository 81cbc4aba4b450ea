"""Model processes: a model version served from a child process of its own.

A runtime in the bridge's own process shares Python's GIL with the event loop: while a forward
pass runs, its thread and the loop (parsing requests, writing responses) take turns at the lock,
so neither gets a core to itself. In a model process the runtime has an interpreter of its own.
It also keeps a crashing model (a segfault in a native library, the kernel's OOM killer) from
taking the bridge down: the call fails with an error that names the model and how its process
ended, and the next call starts a new process.

`ProcessRuntime` implements the `Runtime` interface, so the host, the batcher and the memory
budget treat it like any other runtime; the host wraps a manifest's runtime in it when the bridge
settings name that runtime in `model_processes`. The child runs the very same runtime class.

The child is `python -m sqlml.bridge.model_process FD` (a fresh interpreter: no fork of a bridge
that holds threads, and no re-import of the caller's main script), with the parent's `sys.path`,
so runtimes that plugins register import there too. Linux and macOS (the pipe is an inherited
socket). Protocol over that socket, one call at a time: the parent sends `(operation, args)`,
the child answers `("ok", value)` or `("error", error)`. Arrow tables travel pickled (Arrow IPC
buffers underneath). An error is sent as the `SqlmlError`'s wire dictionary, or as the pickled
exception for anything else, so the bridge reports it exactly as it would from a thread.

The memory the budget counts is the larger of the runtime's own estimate and the child's resident
memory after load (an interpreter with its libraries costs tens to hundreds of MiB on its own).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from sqlml.bridge.exit_status import describe_exit
from sqlml.bridge.manifest import Manifest
from sqlml.bridge.runtimes.base import Runtime
from sqlml.errors import SqlmlError, Unavailable, library_error_text

log = logging.getLogger("sqlml.model_process")

STOP_SECONDS = 10.0  # how long a closing child may take before it is killed


class ProcessRuntime(Runtime):
    """`inner`'s class, loaded and called in a child process."""

    name = "process"  # never named in a manifest: the host wraps the manifest's runtime in it
    thread_safe: ClassVar[bool] = False  # one call at a time over the pipe

    def __init__(
        self, manifest: Manifest, path: Path, inner: type[Runtime], on_crash: Callable[[str], None] | None = None
    ):
        super().__init__(manifest, path)
        self.inner = inner
        self.on_crash = on_crash  # told how the process ended, when it ends other than by unload
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        self._nbytes = 0
        self._lock = threading.Lock()  # the pipe carries one call at a time
        self._unloaded = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the model's process is up (one that has ended is reaped here)."""
        return self._process is not None and self._process.poll() is None

    # -- Runtime ---------------------------------------------------------------------------

    def load(self) -> None:
        with self._lock:
            self._start()

    def predict(self, batch: pa.Table) -> pa.Table:
        result: pa.Table = self._call("predict", batch)
        return result

    def explain(self, batch: pa.Table, top_k: int) -> pa.Table:
        result: pa.Table = self._call("explain", batch, top_k)
        return result

    def forecast(
        self,
        series: list[str] | None,
        horizon: int,
        quantiles: list[str],
        future: pa.Table | None = None,
        history: pa.Table | None = None,
    ) -> pa.Table:
        extra = [] if future is None and history is None else [future, history]
        result: pa.Table = self._call("forecast", series, horizon, quantiles, *extra)
        return result

    def memory_bytes(self) -> int:
        return self._nbytes

    def unload(self) -> None:
        self._unloaded = True
        if self._lock.acquire(blocking=False):
            try:
                self._stop()
            finally:
                self._lock.release()
        # else a call is running: it stops the process when it returns (see _call)

    # -- the parent's side of the pipe -----------------------------------------------------

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            process = subprocess.Popen(
                [sys.executable, "-m", "sqlml.bridge.model_process", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},  # plugins import there too
                stdin=subprocess.DEVNULL,
            )
            self._process, self._connection = process, Connection(os.dup(ours.fileno()))
        try:
            estimate = self._exchange("load", _class_path(self.inner), self.manifest.model_dump_json(), str(self.path))
        except BaseException:
            self._stop()
            raise
        self._nbytes = max(int(estimate), _resident_bytes(process.pid))
        log.info("model %s version %s serves from process %s", self.manifest.name, self.manifest.version, process.pid)

    def _call(self, operation: str, *args: Any) -> Any:
        with self._lock:
            if self._unloaded:
                raise Unavailable(
                    f'model "{self.manifest.name}" version {self.manifest.version} was unloaded while this call waited',
                    hint="retry: the next call loads it again",
                )
            if self._process is not None and self._process.poll() is not None:  # it ended between calls
                self._report_crash(describe_exit(self._process.returncode))
                self._stop()
            if self._process is None:  # it ended, during the last call or since: a new one for this call
                self._start()
            try:
                return self._exchange(operation, *args)
            finally:
                if self._unloaded:
                    self._stop()

    def _exchange(self, operation: str, *args: Any) -> Any:
        assert self._connection is not None and self._process is not None
        try:
            self._connection.send((operation, args))
            status, value = self._connection.recv()
        except (EOFError, OSError) as exc:
            raise self._crashed(operation) from exc
        if status == "ok":
            return value
        raise _rebuild(value)

    def _crashed(self, operation: str) -> SqlmlError:
        assert self._process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(STOP_SECONDS)
        how = describe_exit(self._process.returncode)
        self._report_crash(how)
        self._stop()
        m = self.manifest
        return SqlmlError(  # a 500: the model failed, not the caller
            f'model "{m.name}" version {m.version}: its process {how} during {operation}',
            hint="the next call starts a new process; the bridge's log and the kernel's (dmesg) may say why",
            detail={"model": m.name, "version": m.version},
        )

    def _report_crash(self, how: str) -> None:
        log.error(
            "model %s version %s: its process %s; the next call starts a new one",
            self.manifest.name,
            self.manifest.version,
            how,
        )
        if self.on_crash is not None:
            self.on_crash(how)

    def _stop(self) -> None:
        """Ask the child to unload and exit; it is waited for (and killed if it hangs) in the
        background, so an eviction under the host's lock does not wait for an interpreter to end."""
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if connection is not None:
            with contextlib.suppress(OSError):  # already gone
                connection.send(("close", ()))
            connection.close()
        if process is not None:
            threading.Thread(target=_reap, args=(process,), name="sqlml-model-reaper", daemon=True).start()


def _reap(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        log.warning("model process %s did not exit within %.0f s of close; killing it", process.pid, STOP_SECONDS)
        process.kill()
        process.wait()


def _rebuild(error: Any) -> BaseException:
    if isinstance(error, dict):
        return SqlmlError.from_dict(error)
    if isinstance(error, bytes):
        rebuilt = pickle.loads(error)
        if isinstance(rebuilt, BaseException):
            return rebuilt
    return RuntimeError(str(error))


def _resident_bytes(pid: int | None) -> int:
    """Resident memory of a process (Linux /proc); 0 where that cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# -- the child's side ----------------------------------------------------------------------


def serve_model(connection: Connection) -> None:
    """The child process: load the runtime, then answer calls until `close` or the pipe ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the bridge, which stops its children
    instance: Runtime | None = None

    def load(class_path: str, manifest_json: str, path: str) -> int:
        nonlocal instance
        module_name, _, class_name = class_path.partition(":")
        runtime: type[Runtime] = getattr(importlib.import_module(module_name), class_name)
        instance = runtime(Manifest.model_validate_json(manifest_json), Path(path))
        instance.load()
        return instance.memory_bytes()

    while True:
        try:
            operation, args = connection.recv()
        except (EOFError, OSError):
            return  # the bridge is gone
        if operation == "close":
            if instance is not None:
                instance.unload()
            return
        try:
            call = load if operation == "load" else getattr(instance, operation)
            connection.send(("ok", call(*args)))
        except Exception as exc:  # every failure goes back to the caller, as from a thread
            connection.send(("error", _portable(exc)))


def _portable(exc: Exception) -> dict[str, Any] | bytes | str:
    if isinstance(exc, SqlmlError):
        return exc.to_dict()
    try:
        payload = pickle.dumps(exc)
        pickle.loads(payload)  # some exceptions pickle but cannot be rebuilt
        return payload
    except Exception:
        return library_error_text(exc)


def _class_path(cls: type[Runtime]) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


if __name__ == "__main__":
    serve_model(Connection(int(sys.argv[1])))
