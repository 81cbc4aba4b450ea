"""The worker process of one training job: `python -m sqlml.bridge.jobs.worker JOB_ID`.

The bridge starts one per job in its own process group, with stdout and stderr going to the job's
log file. A crash, a kill or an out-of-memory here ends this process only: the bridge notices the
exit and marks the job failed with its log. SIGTERM (cancel) raises `SystemExit`, so a Ray driver
shuts down cleanly and no version is published.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from types import FrameType

from sqlml import config
from sqlml.bridge.jobs.runner import execute, failure_message, source_rules
from sqlml.bridge.jobs.store import JobStore
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import default_train_roots

log = logging.getLogger("sqlml.jobs")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sqlml.bridge.jobs.worker")
    parser.add_argument("job_id")
    parser.add_argument("--jobs", default=None, help="job store file (default $SQLML_HOME/jobs/jobs.sqlite)")
    parser.add_argument("--store", default=None, help="model store (default SQLML_STORE or $SQLML_HOME/models)")
    parser.add_argument(
        "--train-root",
        action="append",
        default=None,
        help="a folder DuckDB sources may be in (repeat; default $SQLML_HOME)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    signal.signal(signal.SIGTERM, _terminate)
    store = JobStore(args.jobs)
    registry = Registry(args.store or config.store_url())
    log.info("job %s starting (pid %s)", args.job_id, os.getpid())
    try:
        record = execute(args.job_id, store, registry, source_rules(store, args.train_root or default_train_roots()))
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            log.info("job %s stopped by a signal", args.job_id)
        else:
            traceback.print_exc(file=sys.stdout)
        store.finish(args.job_id, "failed", error=failure_message(exc), message="failed")
        sys.stdout.flush()
        return 1
    finally:
        _shutdown_ray()
    log.info("job %s %s: %s", args.job_id, record.state, record.message)
    return 0


def _shutdown_ray() -> None:
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
