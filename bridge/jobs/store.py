"""The job store: every training job's spec, state, progress, metrics and result, in SQLite.

It lives in one file under the sqlml home (`$SQLML_HOME/jobs/jobs.sqlite`, next to each job's log
file), so the job history survives a bridge restart, and the worker processes update their own
job through the same file (WAL mode and a busy timeout make that safe across processes).

States: `queued` -> `running` -> `succeeded` | `failed` | `cancelled`. The three last ones are
final: a late update from a worker that was cancelled never turns its job back into `running`.
A job whose source is an upload (`uploads/` next to the database) deletes it when it ends.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from sqlml import config
from sqlml.bridge.jobs.spec import SOURCE_KINDS, JobSpec
from sqlml.bridge.jobs.uploads import remove_upload
from sqlml.errors import NotFound

State = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id          TEXT PRIMARY KEY,
    spec        TEXT NOT NULL,
    state       TEXT NOT NULL,
    progress    REAL NOT NULL DEFAULT 0,
    message     TEXT NOT NULL DEFAULT '',
    metrics     TEXT NOT NULL DEFAULT '{}',
    version     INTEGER,
    promoted    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    pid         INTEGER,
    log_path    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
"""

# The upload id given to specs of the removed `database` kind: no upload ever has it.
REMOVED_SOURCE_UPLOAD = "0" * 32

_UPDATABLE = frozenset(
    {"state", "progress", "message", "metrics", "version", "promoted", "error", "pid", "started_at", "finished_at"}
)


def default_path() -> Path:
    return config.home() / "jobs" / "jobs.sqlite"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class JobRecord(BaseModel):
    """One job as the routes and the CLI show it."""

    model_config = {"protected_namespaces": ()}

    id: str
    spec: JobSpec
    state: State
    progress: float = 0.0
    message: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    version: int | None = None
    promoted: bool = False
    error: str | None = None
    pid: int | None = None
    log_path: str
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def summary(self) -> dict[str, Any]:
        """The JSON the API returns (the spec included, its DSN password never)."""
        body = self.model_dump(mode="json", exclude={"pid"})
        body["spec"]["source"].pop("dsn", None)
        body["spec"]["source"].pop("upload", None)  # an upload's id lets its creator add rows: not for others
        body["spec"]["source"]["where"] = self.spec.source.describe()
        return body


class JobStore:
    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.logs_dir = self.path.parent / "logs"
        self.logs_dir.mkdir(exist_ok=True)
        self.uploads_dir = self.path.parent / "uploads"
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per call: safe from any thread and from worker processes.
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        finally:
            conn.close()

    def create(self, spec: JobSpec) -> JobRecord:
        job_id = uuid.uuid4().hex[:12]
        log_path = self.logs_dir / f"{job_id}.log"
        log_path.touch()
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO jobs (id, spec, state, log_path, created_at) VALUES (?, ?, 'queued', ?, ?)",
                (job_id, spec.model_dump_json(), str(log_path), now()),
            )
        return self.get(job_id)

    def get(self, job_id: str) -> JobRecord:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (str(job_id),)).fetchone()
        if row is None:
            raise NotFound(f'training job "{job_id}" not found', hint="list jobs with GET /v1/jobs or `sqlml jobs`")
        return _record(row)

    def list(self, limit: int = 100, state: str | None = None) -> builtins.list[JobRecord]:
        query = "SELECT * FROM jobs"
        args: list[Any] = []
        if state:
            query += " WHERE state = ?"
            args.append(state)
        query += " ORDER BY created_at DESC LIMIT ?"
        args.append(int(limit))
        with self._connect() as conn:
            return [_record(row) for row in conn.execute(query, args).fetchall()]

    def update(self, job_id: str, **fields: Any) -> bool:
        """Change fields of a job that is not final yet; returns False (and changes nothing) if it is."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not job fields: {sorted(unknown)}")
        if "metrics" in fields:
            fields["metrics"] = json.dumps(fields["metrics"])
        if "promoted" in fields:
            fields["promoted"] = int(bool(fields["promoted"]))
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._connect() as conn:
            cursor = conn.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ? AND state NOT IN ('succeeded', 'failed', 'cancelled')",
                [*fields.values(), str(job_id)],
            )
            return cursor.rowcount == 1

    def finish(self, job_id: str, state: State, **fields: Any) -> bool:
        """Make the job final (once); its upload, if it read one, is deleted then."""
        finished = self.update(job_id, state=state, finished_at=now(), **fields)
        if finished:
            upload = self.get(job_id).spec.source.upload
            if upload:
                remove_upload(self.uploads_dir, upload)
        return finished

    def live_uploads(self) -> set[str]:
        """The uploads that queued or running jobs will read."""
        live = self.list(limit=10_000, state="queued") + self.list(limit=10_000, state="running")
        return {record.spec.source.upload for record in live if record.spec.source.upload}

    def recover(self, is_alive: Callable[[int], bool]) -> builtins.list[str]:
        """After a restart: jobs still marked running whose process is gone become failed."""
        lost = []
        for record in self.list(limit=10_000, state="running") + self.list(limit=10_000, state="queued"):
            if record.pid is None or not is_alive(record.pid):
                message = "the bridge restarted while this job ran; its worker is gone"
                if self.finish(record.id, "failed", error=message, message=message):
                    lost.append(record.id)
        return lost

    def read_log(self, job_id: str, offset: int = 0) -> tuple[str, int]:
        """Log text from byte `offset` on, and the offset to continue from."""
        path = Path(self.get(job_id).log_path)
        if not path.exists():
            return "", offset
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
        return data.decode("utf-8", errors="replace"), offset + len(data)


def _record(row: sqlite3.Row) -> JobRecord:
    values = dict(row)
    values["spec"] = JobSpec.model_validate(_upgraded_spec(values["spec"]))
    values["metrics"] = json.loads(values["metrics"] or "{}")
    values["promoted"] = bool(values["promoted"])
    return JobRecord.model_validate(values)


def _upgraded_spec(text: str) -> dict[str, Any]:
    """A stored spec in today's shape: specs of older bridges carry `source.database` (a removed
    kind: the bridge read that database with its own role); they stay listable, as read-only history."""
    spec: dict[str, Any] = json.loads(text)
    source = spec["source"]
    database = source.pop("database", None)
    if database and not any(source.get(kind) for kind in SOURCE_KINDS):
        source["upload"] = REMOVED_SOURCE_UPLOAD
        source["origin"] = source.get("origin") or f"postgres database {database}"
    return spec
