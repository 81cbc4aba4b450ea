"""Ray Train XGBoost lead scoring with 1 vs 2 workers on this machine, side by side in one run.

Data: the Caravan customers (5,822 rows, 85 features, `sqlml.data.leads`), the same stratified
80/20 split for every run. Each configuration trains through `ray_backend.fit_xgboost` (Ray Train
`XGBoostTrainer`, one thread a worker) on one local Ray started once (`num_cpus` = 2), so worker
start-up is part of each time, as it is in a job; an in-process `xgb.train` with one thread is the
baseline. Prints seconds and AUC per configuration, then the ratio last:

    .venv/bin/python bench/train_scaling.py [--rounds 300] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration; the best counts")
    args = parser.parse_args()

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    import xgboost as xgb

    from sqlml.bridge.jobs import ray_backend
    from sqlml.bridge.jobs.spec import Resources
    from sqlml.bridge.tabular_features import numeric_plan
    from sqlml.bridge.training.tabular import booster_params
    from sqlml.data.leads import TARGET_COLUMN, lead_features, load_leads

    frame = load_leads()
    features = lead_features(frame)
    x = frame[features].to_numpy(dtype=np.float32)
    y = frame[TARGET_COLUMN].to_numpy(dtype=np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=7)
    plan = numeric_plan(features, ["bigint"] * len(features))
    params, rounds = booster_params({"n_estimators": args.rounds}, plan)
    params["nthread"] = 1
    print(f"Caravan: {len(y_train)} train rows x {len(features)} features, {rounds} rounds, {os.cpu_count()} CPUs")

    def timed(fit: object) -> tuple[float, float]:
        best, auc = float("inf"), 0.0
        for _ in range(args.repeat):
            started = time.perf_counter()
            booster = fit()  # type: ignore[operator]
            best = min(best, time.perf_counter() - started)
            auc = float(roc_auc_score(y_test, booster.inplace_predict(x_test)))
        return best, auc

    dtrain = xgb.DMatrix(x_train, label=y_train, feature_names=features)
    local_s, local_auc = timed(lambda: xgb.train(params, dtrain, num_boost_round=rounds))
    print(f"in-process xgb.train, 1 thread : {local_s:7.2f} s  AUC {local_auc:.4f}")

    storage = tempfile.mkdtemp(prefix="sqlml-bench-ray-")
    os.environ["SQLML_RAY_STORAGE"] = storage
    ray.init(num_cpus=2, _temp_dir=ray_backend.ray_temp_dir(), include_dashboard=False, log_to_driver=False)
    try:
        results = {}
        for workers in (1, 2):
            resources = Resources(workers=workers, cpus_per_worker=1)
            seconds, auc = timed(
                lambda r=resources: ray_backend.fit_xgboost(
                    f"bench{r.workers}", x_train, y_train, plan, params, rounds, r
                )
            )
            results[workers] = seconds
            print(f"Ray Train XGBoost, {workers} worker(s): {seconds:7.2f} s  AUC {auc:.4f}")
    finally:
        ray.shutdown()
    print(f"speed-up, 2 Ray workers vs 1: {results[1] / results[2]:.2f}x")


if __name__ == "__main__":
    main()
