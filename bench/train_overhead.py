"""Training through the bridge vs `xgboost.train` on the same matrix: what sqlml's job path costs.

The Caravan leads (5,822 rows x 85 features) train the same booster (the trainer's default
parameters, 250 rounds) twice, side by side:

- raw: `xgboost.train` in this process on the float32 matrix of the 80 % training split;
- bridge: a real `sqlml serve` process; the rows go up as `ml.train` sends them
  (`POST /v1/uploads`, chunks of 1,000 JSON rows), a job is submitted (`POST /v1/jobs`, local
  backend) and polled until it succeeds. The wall time covers upload, job start (a worker
  subprocess that imports XGBoost), planning, the same fit, the held-out metrics and publishing.

The job's own `job_seconds` metric (read, plan, fit, measure) is printed too, so the fixed costs
(HTTP, the worker's start) show apart from the per-row ones. The ratio is the last line.
"""

from __future__ import annotations

import tempfile
import time

import httpx
import numpy as np
import xgboost as xgb
from _util import Bridge
from sklearn.model_selection import train_test_split

from sqlml.bridge.tabular_features import numeric_plan
from sqlml.bridge.training.tabular import booster_params
from sqlml.data.leads import TARGET_COLUMN, lead_features, load_leads

CHUNK = 1_000
INT8_OID, BOOL_OID = 20, 16


def main() -> None:
    frame = load_leads()
    features = lead_features(frame)
    x = frame[features].to_numpy(dtype=np.float32)
    y = frame[TARGET_COLUMN].to_numpy(dtype=np.float32)
    x_train, _x_test, y_train, _y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=7)
    plan = numeric_plan(features, ["bigint"] * len(features))
    params, rounds = booster_params({}, plan)
    started = time.perf_counter()
    xgb.train(params, xgb.DMatrix(x_train, label=y_train, feature_names=features), num_boost_round=rounds)
    raw_s = time.perf_counter() - started
    print(f"Caravan: {len(y_train)} training rows x {len(features)} features, {rounds} rounds")
    print(f"raw xgboost.train on the matrix      : {raw_s:6.2f} s")

    rows = frame[[*features, TARGET_COLUMN]].to_dict(orient="records")
    with tempfile.TemporaryDirectory() as store, Bridge(store) as bridge, httpx.Client(base_url=bridge.url) as http:
        started = time.perf_counter()
        columns = [{"name": f, "pg_type": INT8_OID} for f in features] + [{"name": TARGET_COLUMN, "pg_type": BOOL_OID}]
        upload = http.post("/v1/uploads", json={"columns": columns}, timeout=60).json()["id"]
        for start in range(0, len(rows), CHUNK):
            http.post(f"/v1/uploads/{upload}/rows", json={"rows": rows[start : start + CHUNK]}, timeout=60)
        uploaded_s = time.perf_counter() - started
        spec = {"model": "lead_bench", "task": "classification", "target": TARGET_COLUMN, "features": features,
                "source": {"upload": upload, "query": "SELECT * FROM leads"}}  # fmt: skip
        job = http.post("/v1/jobs", json=spec, timeout=60).json()
        while (record := http.get(f"/v1/jobs/{job['id']}", timeout=60).json())["state"] not in ("succeeded", "failed"):
            time.sleep(0.05)
        bridge_s = time.perf_counter() - started
    assert record["state"] == "succeeded", record
    metrics = record["metrics"]
    print(f"through the bridge (upload, job, fit) : {bridge_s:6.2f} s  (upload {uploaded_s:.2f} s, "
          f"job_seconds {metrics['job_seconds']:.2f} s, held-out AUC {metrics['auc']:.4f})")  # fmt: skip
    print(f"bridge / raw: {bridge_s / raw_s:.2f}x")


if __name__ == "__main__":
    main()
