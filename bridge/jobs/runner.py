"""Runs training jobs: refuse bad specs up front, train, publish a version, apply the promotion policy.

`JobManager` is what the bridge routes and tests use: `submit(spec)` validates the spec against
the data source and the machine before anything is queued (unknown task, a query that fails, a
missing target or feature column, no rows, GPUs asked for but absent: each a BadRequest naming
the cause), records the job, and hands it to the launcher (`local.LocalLauncher`: a worker
subprocess). `execute(job_id, ...)` is what that worker runs: read the rows, train through the
spec's backend, publish, promote. Nothing touches the registry until the artifact is complete,
so a worker that dies or is cancelled leaves the registry exactly as it was. Both sides read
through the same `SourceRules` (training roots, upload store): the worker refuses what the bridge
would.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any, Protocol

import pyarrow as pa

from sqlml.bridge.jobs import sources
from sqlml.bridge.jobs.sources import SourceRules
from sqlml.bridge.jobs.spec import JobSpec, is_better
from sqlml.bridge.jobs.store import JobRecord, JobStore, now
from sqlml.bridge.jobs.uploads import DEFAULT_MAX_BYTES, UploadStore
from sqlml.bridge.manifest import Manifest
from sqlml.bridge.registry import Registry
from sqlml.bridge.training.common import artifact_dir
from sqlml.errors import BadRequest, Conflict, SqlmlError, close_names, library_error_text

log = logging.getLogger("sqlml.jobs")


class Launcher(Protocol):
    def start(self, job_id: str) -> int: ...

    def cancel(self, job_id: str, pid: int | None) -> None: ...


# -- validation, before any work -------------------------------------------------------------


def local_gpu_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def check_gpus(spec: JobSpec) -> None:
    """GPUs on this machine, for the local backend and a Ray that the worker starts here.

    A job for an existing Ray cluster (`RAY_ADDRESS`) is checked against the cluster's resources
    by the worker, before it reads any rows.
    """
    if spec.resources.gpus <= 0 or (spec.backend == "ray" and os.environ.get("RAY_ADDRESS")):
        return
    found = local_gpu_count()
    if found < spec.resources.gpus:
        raise BadRequest(
            f"the job asks for {spec.resources.gpus} GPU(s) but this machine has {found}",
            hint="set resources.gpus to 0 (CPU training), or use backend 'ray' with RAY_ADDRESS of a GPU cluster",
            detail={"gpus_requested": spec.resources.gpus, "gpus_available": found},
        )


def source_rules(store: JobStore, train_roots: Sequence[str], max_upload_bytes: int = DEFAULT_MAX_BYTES) -> SourceRules:
    """What the jobs of `store` may read: DuckDB files under `train_roots`, the store's uploads."""
    return SourceRules(tuple(str(root) for root in train_roots), UploadStore(store.uploads_dir, max_upload_bytes))


def validate(spec: JobSpec, rules: SourceRules) -> dict[str, str]:
    """Check the spec against the machine and the data source; returns the query's column types."""
    from sqlml.bridge.jobs.spec import TABULAR_TASKS
    from sqlml.bridge.training import tabular  # imports the trainers' libraries, which serving need not

    check_gpus(spec)
    types = sources.probe(spec.source, rules)
    columns = list(types)
    for name in [spec.target, *(spec.features or [])]:
        if name not in columns:
            close = close_names(name, columns)
            raise BadRequest(
                f'the training query has no column "{name}"',
                hint=f"did you mean {', '.join(map(repr, close))}?" if close else f"columns: {', '.join(columns)}",
                detail={"column": name, "columns": columns},
            )
    features = list(spec.features) if spec.features else [c for c in columns if c != spec.target]
    if not features:
        raise BadRequest("the training query has no feature columns besides the target")
    arrow_types = {name: _arrow_type(text) for name, text in types.items()}
    if spec.task in TABULAR_TASKS:
        excluded = spec.params.get("exclude") or []
        features = [f for f in features if f not in ([excluded] if isinstance(excluded, str) else excluded)]
        tabular.check_columns(arrow_types, spec.target, features, tabular.tabular_task(spec.task), spec.params)
    elif spec.task == "sentiment" and (len(features) != 1 or not pa.types.is_string(arrow_types[features[0]])):
        raise BadRequest(
            "sentiment training needs exactly one text column besides the target",
            hint="select the text and the label only, e.g. SELECT body, great FROM reviews",
            detail={"features": features},
        )
    elif spec.task == "forecast":
        from sqlml.bridge.jobs.forecast_job import check_forecast_columns

        check_forecast_columns(spec, types)
    return types


def _arrow_type(text: str) -> pa.DataType:
    try:
        return pa.type_for_alias(text)
    except ValueError:
        pass
    for prefix, kind in (("timestamp", pa.timestamp("us")), ("date", pa.date32()), ("decimal", pa.float64()),
                         ("dictionary", pa.string())):  # fmt: skip
        if text.startswith(prefix):
            return kind
    return pa.string() if "string" in text else pa.null()


# -- running, inside the worker process ------------------------------------------------------


def execute(job_id: str, store: JobStore, registry: Registry, rules: SourceRules) -> JobRecord:
    """Train job `job_id` end to end; raises on failure (the worker records it)."""
    from sqlml.bridge.jobs.tasks import TRAINERS

    record = store.get(job_id)
    spec = record.spec
    store.update(job_id, state="running", started_at=now(), pid=os.getpid(), message="starting")

    def progress(fraction: float, message: str) -> None:
        log.info("%3.0f%% %s", 100 * fraction, message)
        store.update(job_id, progress=round(min(max(fraction, 0.0), 1.0), 4), message=message)

    if spec.backend == "ray":
        from sqlml.bridge.jobs import ray_backend

        progress(0.01, "connecting to Ray")
        ray_backend.connect(spec.resources)
        ray_backend.check_gpus(spec.resources)
    progress(0.02, f"reading rows from {spec.source.describe()}")
    dataset = sources.read_table(spec.source, rules)
    progress(0.1, f"read {dataset.table.num_rows} rows ({dataset.lineage['read_seconds']} s)")
    started = time.perf_counter()
    published: list[tuple[Manifest, bool, str]] = []
    with artifact_dir("sqlml-job-") as folder:
        trained = TRAINERS[spec.task](job_id, spec, dataset.table, folder, progress)
        job_seconds = round(time.perf_counter() - started, 3)
        progress(0.96, f"publishing {len(trained)} version(s)")
        # every artifact is complete before the first publish: a failure above leaves no trace
        for manifest, artifact in trained:
            lineage = {
                **manifest.lineage,
                **dataset.lineage,
                "target": spec.target,
                "job_id": job_id,
                "backend": spec.backend,
                "resources": spec.resources.model_dump(),
            }
            metrics = {**manifest.metrics, "job_seconds": job_seconds}
            stored = registry.publish(manifest.model_copy(update={"metrics": metrics, "lineage": lineage}), artifact)
            published.append((stored, *apply_policy(registry, spec, stored)))
    for stored, _promoted, reason in published:
        log.info("published %s version %d; %s", stored.name, stored.version, reason)
    first, promoted, reason = published[0]
    others = "; ".join(f"{m.name} v{m.version}" for m, _p, _r in published[1:])
    store.finish(
        job_id,
        "succeeded",
        progress=1.0,
        metrics=first.metrics,
        version=first.version,
        promoted=promoted,
        message=f"{first.name} version {first.version}: {reason}" + (f"; also {others}" if others else ""),
    )
    return store.get(job_id)


def apply_policy(registry: Registry, spec: JobSpec, stored: Manifest) -> tuple[bool, str]:
    """Move `spec.alias` to the new version when the policy says so; returns (promoted, why).

    `if_better` never promotes a forecast that loses to its seasonal-naive baseline
    (`beats_seasonal_naive` 0: its p50 MAE is not below the naive forecast's), not even a first
    version; `always` promotes it and `never` does not, and both say that it loses.
    """
    loses = baseline_loss(stored)
    if spec.promote == "never":
        return False, "not promoted (promote = never)" + (f"; {loses}" if loses else "")
    aliases = registry.aliases(stored.name)
    if spec.promote == "always":
        registry.set_alias(stored.name, spec.alias, stored.version)
        return True, f"promoted to {spec.alias}" + (f"; {loses}" if loses else "")
    if loses:
        return False, f"not promoted: {loses}"
    if spec.alias not in aliases:
        registry.set_alias(stored.name, spec.alias, stored.version)
        return True, f"promoted to {spec.alias} (no {spec.alias} version yet)"
    metric = spec.promotion_metric()
    incumbent = registry.manifest(stored.name, aliases[spec.alias]).metrics.get(metric)
    candidate = stored.metrics.get(metric)
    if candidate is None:
        return False, f"not promoted: the new version has no metric {metric!r}"
    if incumbent is None or is_better(metric, candidate, incumbent):
        registry.set_alias(stored.name, spec.alias, stored.version)
        before = "none" if incumbent is None else f"{incumbent:.4g}"
        return True, f"promoted to {spec.alias}: {metric} {candidate:.4g} vs {before}"
    return False, f"not promoted: {metric} {candidate:.4g} does not beat {spec.alias}'s {incumbent:.4g}"


def baseline_loss(stored: Manifest) -> str:
    """Why a forecast loses to the seasonal-naive forecast on its test split; "" when it does not."""
    metrics = stored.metrics
    if "beats_seasonal_naive" not in metrics or metrics["beats_seasonal_naive"] >= 1.0:
        return ""
    mae, naive = metrics.get("mae", float("nan")), metrics.get("mae_seasonal_naive", float("nan"))
    return f"it loses to the seasonal-naive forecast (MAE {mae:.4g} vs {naive:.4g}, beats_seasonal_naive = 0)"


# -- the bridge's side ---------------------------------------------------------------------------


class JobManager:
    """Submit, list, describe, cancel: what the routes call (blocking: run it in a thread)."""

    def __init__(self, store: JobStore, registry: Registry, launcher: Launcher, rules: SourceRules):
        self.store = store
        self.registry = registry
        self.launcher = launcher
        self.rules = rules

    @property
    def uploads(self) -> UploadStore:
        return self.rules.uploads

    def submit(self, spec: JobSpec | dict[str, Any]) -> JobRecord:
        from sqlml.bridge.jobs.spec import parse_spec

        spec = spec if isinstance(spec, JobSpec) else parse_spec(spec)
        if spec.source.upload and spec.source.upload in self.store.live_uploads():
            raise Conflict(
                f"upload {spec.source.upload} is already being read by another job",
                hint="an upload feeds one job: upload the rows again for a second one",
                detail={"upload": spec.source.upload},
            )
        validate(spec, self.rules)
        record = self.store.create(spec)
        try:
            pid = self.launcher.start(record.id)
        except Exception as exc:
            self.store.finish(record.id, "failed", error=f"could not start the worker: {exc}")
            raise
        self.store.update(record.id, pid=pid)
        return self.store.get(record.id)

    def get(self, job_id: str) -> JobRecord:
        """The job; one not yet final whose worker is gone (it outlived a bridge restart, then died)
        becomes failed. Queued jobs count too: the worker is started, with its pid recorded, before
        it marks the job running."""
        record = self.store.get(job_id)
        if record.state in ("queued", "running") and record.pid and not _process_alive(record.pid):
            message = "the worker is gone (it outlived a bridge restart and then died)"
            self.store.finish(job_id, "failed", error=message, message=message)
            record = self.store.get(job_id)
        return record

    def cancel(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id)
        if record.final:
            return record
        self.store.finish(job_id, "cancelled", message="cancelled", error="cancelled on request")
        self.launcher.cancel(job_id, record.pid)
        return self.store.get(job_id)

    def wait(self, job_id: str, timeout: float = 600.0, poll: float = 0.2) -> JobRecord:
        """Block until the job is final (tests, CLI with a local store)."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.store.get(job_id)
            if record.final or time.monotonic() > deadline:
                return record
            time.sleep(poll)


def _process_alive(pid: int) -> bool:
    from sqlml.bridge.jobs.local import pid_alive

    return pid_alive(pid)


def failure_message(exc: BaseException) -> str:
    if isinstance(exc, SqlmlError):
        return str(exc)
    return library_error_text(exc, limit=2000)
