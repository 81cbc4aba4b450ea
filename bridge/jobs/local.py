"""The local launcher: each job runs in its own `python -m sqlml.bridge.jobs.worker` subprocess.

A subprocess, not a thread, so that a job that crashes, leaks memory or is killed cannot take the
bridge down with it. The worker gets its own process group (and session), so cancelling a job
signals everything it started — a private Ray cluster or DataLoader workers included: SIGTERM
first (the worker shuts Ray down and exits), SIGKILL for what is left after a grace period.

A watcher thread per job waits for the worker to exit; a worker that exits without recording a
final state (killed, segfault, OOM) leaves its job marked failed with the tail of its log.

The worker reads its rows under the same rules as the bridge: the training roots travel on its
command line (`--train-root`, one per folder), and its uploads are next to the job store it is given.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlml.bridge.exit_status import describe_exit
from sqlml.bridge.jobs.store import JobStore

LOG_TAIL_BYTES = 4000


class LocalLauncher:
    def __init__(
        self,
        store: JobStore,
        model_store: str,
        env: Mapping[str, str] | None = None,
        grace_s: float = 10.0,
        *,
        train_roots: Sequence[str],
    ):
        self.store = store
        self.model_store = model_store
        self.env = dict(env) if env is not None else None
        self.train_roots = [str(root) for root in train_roots]
        self.grace_s = grace_s
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def start(self, job_id: str) -> int:
        record = self.store.get(job_id)
        command = [
            sys.executable,
            "-m",
            "sqlml.bridge.jobs.worker",
            job_id,
            "--jobs",
            str(self.store.path),
            "--store",
            self.model_store,
            *(argument for root in self.train_roots for argument in ("--train-root", root)),
        ]
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(record.log_path, "ab") as log_file:
            process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        with self._lock:
            self._processes[job_id] = process
        threading.Thread(target=self._watch, args=(job_id, process), name=f"sqlml-job-{job_id}", daemon=True).start()
        return process.pid

    def _watch(self, job_id: str, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        with self._lock:
            self._processes.pop(job_id, None)
        record = self.store.get(job_id)
        if record.final:
            return
        how = describe_exit(code)
        tail = _log_tail(Path(record.log_path))
        self.store.finish(job_id, "failed", error=f"the worker {how}; last log lines:\n{tail}", message=f"worker {how}")

    def cancel(self, job_id: str, pid: int | None) -> None:
        """Stop the job's process group: SIGTERM, then SIGKILL after the grace period."""
        with self._lock:
            process = self._processes.get(job_id)
        group = process.pid if process is not None else pid
        if group is None:
            return
        _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline and _group_alive(group):
            time.sleep(0.1)
            if process is not None:
                process.poll()
        _signal_group(group, signal.SIGKILL)  # whatever ignored SIGTERM, children included

    def running(self) -> list[str]:
        with self._lock:
            return list(self._processes)


def pid_alive(pid: int) -> bool:
    """Whether a process answers signal 0. Unlike dashboards/provision.py's check this never reaps a
    zombie with waitpid: the launcher's workers are its Popen children, and reaping one here would
    take its exit status from Popen.poll."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A process that exited but was not reaped yet answers signal 0 too; /proc says it is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (not Linux) or already gone: signal 0 decided
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _log_tail(path: Path) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
        return fh.read().decode("utf-8", errors="replace").strip()
