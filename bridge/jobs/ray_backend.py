"""The Ray backend: distributed XGBoost, DDP fine-tuning and per-series fits on a Ray cluster.

The job's worker process is the Ray driver. It connects to `RAY_ADDRESS` when set (an existing
cluster, `ray://` or `host:port`), else starts a private local Ray whose temp folder
(`SQLML_RAY_TMPDIR`, default `/tmp/sqlml-ray-<uid>`: short, because Ray puts Unix sockets there)
and results folder (`SQLML_RAY_STORAGE`, default `$SQLML_HOME/ray`) belong to sqlml. Cancelling a
job kills the driver's process group; Ray then stops the job's workers, which belong to the driver.

- Lead scoring: Ray Train `XGBoostTrainer(train_loop_per_worker)` (the V2 API). Each worker takes
  every N-th training row; Ray sets up XGBoost's collective, so the trees are built from all rows.
  Rank 0 reports once at the end with the booster as a checkpoint (reporting every round costs
  about 2 s a round).
- Sentiment: Ray Train `TorchTrainer` running `ddp_sentiment.train_loop`, the same function
  `torchrun` runs: gloo on CPUs, nccl with `use_gpu` when the spec asks for GPUs.
- Forecast: one Ray task per series calling a per-series fit function.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sqlml import config
from sqlml.bridge.jobs.spec import Resources
from sqlml.bridge.tabular_features import FeaturePlan
from sqlml.errors import BadRequest, TrainingError


def ray_temp_dir() -> str:
    return os.environ.get("SQLML_RAY_TMPDIR") or f"/tmp/sqlml-ray-{os.getuid()}"


def storage_path() -> str:
    """Where Ray Train persists results and checkpoints (must be shared storage on a real cluster)."""
    path = os.environ.get("SQLML_RAY_STORAGE") or str(config.home() / "ray")
    if "://" not in path:
        Path(path).mkdir(parents=True, exist_ok=True)
    return path


def connect(resources: Resources) -> None:
    """Join `RAY_ADDRESS`, or start a local Ray sized for the job; reuse a connection already made."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    # A private single-machine cluster needs no token; opting out keeps ~/.ray untouched.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cpus = max(int(os.cpu_count() or 1), int(np.ceil(resources.workers * resources.cpus_per_worker)) + 1)
    ray.init(
        num_cpus=cpus,
        num_gpus=resources.gpus or None,
        _temp_dir=ray_temp_dir(),
        include_dashboard=False,
        log_to_driver=True,
    )


def check_gpus(resources: Resources) -> None:
    """Refuse a GPU job the cluster cannot place, before any data is read."""
    import ray

    if resources.gpus <= 0:
        return
    available = float(ray.cluster_resources().get("GPU", 0.0))
    if available < resources.gpus:
        raise BadRequest(
            f"the job asks for {resources.gpus} GPU(s) but the Ray cluster has {available:g}",
            hint="set resources.gpus to 0 or point RAY_ADDRESS at a cluster with GPU workers",
        )


def scaling_config(resources: Resources) -> Any:
    from ray.train import ScalingConfig

    per_worker: dict[str, float] = {"CPU": resources.cpus_per_worker}
    if resources.gpus:
        per_worker["GPU"] = resources.gpus / resources.workers
    return ScalingConfig(num_workers=resources.workers, use_gpu=resources.gpus > 0, resources_per_worker=per_worker)


def run_config(job_id: str) -> Any:
    from ray.train import RunConfig

    return RunConfig(name=f"sqlml-{job_id}", storage_path=storage_path())


# -- tabular (XGBoost) ------------------------------------------------------------------------------


def _xgboost_loop(config: dict[str, Any]) -> None:
    """Runs on each Ray Train worker inside XGBoost's collective context."""
    import ray
    import ray.train
    import xgboost as xgb

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    x_train, y_train = ray.get(config["data"])
    dtrain = xgb.DMatrix(
        x_train[rank::world],
        label=y_train[rank::world],
        feature_names=config["features"],
        feature_types=config["feature_types"],
        enable_categorical=config["categorical"],
    )
    booster = xgb.train(config["params"], dtrain, num_boost_round=config["rounds"])
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if rank == 0:
            booster.save_model(os.path.join(folder, "model.json"))
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report({"rounds": config["rounds"], "workers": world}, checkpoint=checkpoint)


def fit_xgboost(
    job_id: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    plan: FeaturePlan,
    params: dict[str, Any],
    rounds: int,
    resources: Resources,
) -> Any:
    """A booster trained by `resources.workers` Ray Train workers on the rows given."""
    import ray
    import xgboost as xgb
    from ray.train.xgboost import XGBoostTrainer

    trainer = XGBoostTrainer(
        _xgboost_loop,
        train_loop_config={
            "data": ray.put((x_train, y_train)),
            "features": plan.matrix_names,
            "feature_types": plan.matrix_types,
            "categorical": plan.has_categories,
            "params": params,
            "rounds": rounds,
        },
        scaling_config=scaling_config(resources),
        run_config=run_config(job_id),
    )
    result = trainer.fit()
    if result.error is not None or result.checkpoint is None:
        raise TrainingError(f"Ray XGBoost training failed: {result.error}")
    booster = xgb.Booster()
    with result.checkpoint.as_directory() as folder:
        booster.load_model(os.path.join(folder, "model.json"))
    return booster


# -- sentiment ---------------------------------------------------------------------------------


def _torch_loop(config: dict[str, Any]) -> None:
    import json

    import ray.train
    import ray.train.torch

    from sqlml.bridge.jobs.ddp_sentiment import train_loop

    config = {**config, "device": str(ray.train.torch.get_device())}
    rank = ray.train.get_context().get_world_rank()
    with tempfile.TemporaryDirectory() as folder:
        config["output_dir"] = os.path.join(folder, "model") if rank == 0 else None
        result = train_loop(config)
        checkpoint = None
        if rank == 0:
            Path(folder, "result.json").write_text(json.dumps(result))
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report({"world_size": result.get("world_size", 0)}, checkpoint=checkpoint)


def fit_sentiment(job_id: str, loop_config: dict[str, Any], resources: Resources, output_dir: Path) -> dict[str, Any]:
    """Run DDP fine-tuning on Ray workers; the model lands in `output_dir`, rank 0's result returns."""
    import json
    import shutil

    from ray.train.torch import TorchConfig, TorchTrainer

    trainer = TorchTrainer(
        _torch_loop,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if resources.gpus else "gloo"),
        scaling_config=scaling_config(resources),
        run_config=run_config(job_id),
    )
    result = trainer.fit()
    if result.error is not None or result.checkpoint is None:
        raise TrainingError(f"Ray Torch training failed: {result.error}")
    with result.checkpoint.as_directory() as folder:
        shutil.copytree(Path(folder) / "model", output_dir, dirs_exist_ok=True)
        answer: dict[str, Any] = json.loads((Path(folder) / "result.json").read_text())
    return answer


# -- per-series forecasts ----------------------------------------------------------------------


def map_series(fit_one: Callable[..., Any], items: list[tuple[Any, ...]], cpus_per_task: float = 1.0) -> list[Any]:
    """`fit_one(*item)` for every item, each in its own Ray task, results in input order."""
    import ray

    remote = ray.remote(num_cpus=cpus_per_task, max_retries=0)(fit_one)
    return list(ray.get([remote.remote(*item) for item in items]))
