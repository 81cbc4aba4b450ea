"""Training routes of the bridge: jobs (`/v1/jobs`: submit, list, describe, stream logs, cancel)
and uploads (`/v1/uploads`: the rows a client sends for a job to read).

Every route needs a token with the `train` scope (or `admin`). `include_job_routes(app)` adds the
routers to an app built by `sqlml.bridge.app.create_app` and puts a `JobManager` on
`app.state.jobs`: a SQLite job store under `$SQLML_HOME/jobs/` (`SQLML_JOBS_DB` moves it), its
uploads next to it, and the local launcher, whose workers publish into the bridge's model store and
read under the bridge's `train_roots`. At start it marks jobs whose worker died with an earlier
bridge as failed and sweeps stale uploads. Blocking work runs in worker threads.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from sqlml.bridge.api_schemas import ERROR_RESPONSES
from sqlml.bridge.auth import TRAIN
from sqlml.bridge.jobs.local import LocalLauncher, pid_alive
from sqlml.bridge.jobs.runner import JobManager, source_rules
from sqlml.bridge.jobs.spec import JobSpec
from sqlml.bridge.jobs.store import JobStore
from sqlml.bridge.jobs.uploads import NewUpload, UploadRows, owner_of
from sqlml.bridge.state import BridgeState, bridge_state

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)
uploads_router = APIRouter(prefix="/v1/uploads", tags=["jobs"], responses=ERROR_RESPONSES)
LOG_POLL_SECONDS = 0.5


def include_job_routes(app: FastAPI, jobs_db: str | os.PathLike[str] | None = None) -> JobManager:
    """Add `/v1/jobs` and `/v1/uploads` to a bridge app; returns the JobManager (also `app.state.jobs`)."""
    state: BridgeState = app.state.bridge
    settings = state.settings
    store = JobStore(jobs_db or os.environ.get("SQLML_JOBS_DB") or None)
    store.recover(pid_alive)
    launcher = LocalLauncher(store, state.registry.url, train_roots=settings.train_roots)
    manager = JobManager(
        store, state.registry, launcher, source_rules(store, settings.train_roots, settings.max_upload_bytes)
    )
    manager.uploads.sweep(store.live_uploads())
    app.state.jobs = manager
    app.include_router(router)
    app.include_router(uploads_router)
    app.openapi_schema = None  # routes changed after create_app: rebuild the schema on demand
    return manager


def _manager(request: Request) -> JobManager:
    state = bridge_state(request)
    state.auth.require(request.headers.get("authorization"), TRAIN)
    manager: JobManager = request.app.state.jobs
    return manager


@router.post("", status_code=202, summary="Submit a training job")
async def submit_job(spec: JobSpec, request: Request) -> JSONResponse:
    """Validate the spec against its data source (before any work) and start the job; 202 with its id."""
    manager = _manager(request)
    if spec.source.upload:
        owner = owner_of(request.headers.get("authorization"))
        await anyio.to_thread.run_sync(manager.uploads.check_owner, spec.source.upload, owner)
    record = await anyio.to_thread.run_sync(manager.submit, spec)
    body = record.summary()
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/jobs/{record.id}"})


@router.get("", summary="List training jobs")
async def list_jobs(
    request: Request,
    state: str | None = Query(None, description="queued, running, succeeded, failed or cancelled"),
    limit: int = Query(100, ge=1, le=10_000),
) -> dict[str, Any]:
    manager = _manager(request)
    records = await anyio.to_thread.run_sync(lambda: manager.store.list(limit=limit, state=state))
    return {"jobs": [r.summary() for r in records]}


@router.get("/{job_id}", summary="Describe a training job")
async def describe_job(job_id: str, request: Request) -> dict[str, Any]:
    """State, progress (0..1), message, metrics, the version it published and whether it was promoted."""
    manager = _manager(request)
    record = await anyio.to_thread.run_sync(manager.get, job_id)
    return record.summary()


@router.get("/{job_id}/logs", summary="Stream a training job's log", response_class=StreamingResponse)
async def job_logs(
    job_id: str,
    request: Request,
    follow: bool = Query(False, description="keep streaming until the job ends"),
    offset: int = Query(0, ge=0, description="start at this byte of the log"),
) -> StreamingResponse:
    manager = _manager(request)
    await anyio.to_thread.run_sync(manager.store.get, job_id)  # 404 before the stream starts

    async def chunks() -> AsyncIterator[str]:
        position = offset
        while True:
            text, position = await anyio.to_thread.run_sync(manager.store.read_log, job_id, position)
            if text:
                yield text
            if not follow or (await anyio.to_thread.run_sync(manager.get, job_id)).final:
                text, position = await anyio.to_thread.run_sync(manager.store.read_log, job_id, position)
                if text:
                    yield text
                return
            await asyncio.sleep(LOG_POLL_SECONDS)

    return StreamingResponse(chunks(), media_type="text/plain; charset=utf-8")


@router.post("/{job_id}/cancel", summary="Cancel a training job")
async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    """Stop the job's workers (SIGTERM, then SIGKILL); a finished job is returned unchanged."""
    manager = _manager(request)
    record = await anyio.to_thread.run_sync(manager.cancel, job_id)
    return record.summary()


@uploads_router.post("", status_code=201, summary="Start an upload of training rows")
async def create_upload(body: NewUpload, request: Request) -> JSONResponse:
    """Declare the columns (name, PostgreSQL type OID); 201 with the upload's id. Sweeps stale uploads."""
    manager = _manager(request)

    owner = owner_of(request.headers.get("authorization"))

    def create() -> str:
        manager.uploads.sweep(manager.store.live_uploads())
        return manager.uploads.create(body.columns, owner)

    upload_id = await anyio.to_thread.run_sync(create)
    columns = [column.model_dump() for column in body.columns]
    return JSONResponse({"id": upload_id, "columns": columns}, status_code=201)


@uploads_router.post("/{upload_id}/rows", summary="Append rows to an upload")
async def append_rows(upload_id: str, body: UploadRows, request: Request) -> dict[str, int]:
    """One chunk of rows as `row_to_json` objects; answers the rows uploaded so far."""
    manager = _manager(request)

    def append() -> int:
        manager.uploads.check_owner(upload_id, owner_of(request.headers.get("authorization")))
        return manager.uploads.append(upload_id, body.rows)

    return {"rows": await anyio.to_thread.run_sync(append)}
