"""sqlml's tabular trainer vs a hand-written XGBoost with native categoricals, on public tables.

For each table (telco churn: 11 text columns and NULL charges; Ames housing: 40 text columns) the
same split trains two models: `train_tabular` as `ml.train` runs it (the user's table as it is),
and a hand-written `xgboost.train` on a pandas frame whose text columns are `category` dtype
(`enable_categorical=True`), with the same rounds, depth and learning rate. The held-out metric of
both is printed side by side; the difference is the last line. Run: `.venv/bin/python
bench/tabular_categoricals.py`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.metrics import mean_squared_error, roc_auc_score
from sklearn.model_selection import train_test_split

from sqlml.bridge.training.tabular import DEFAULT_PARAMS, train_tabular
from sqlml.data.tables import TABLES, load_table

SEED = 7


def hand_written(frame: pd.DataFrame, target: str, task: str, id_column: str) -> tuple[float, float]:
    """The booster an XGBoost user writes by hand; returns (held-out metric, seconds)."""
    import xgboost as xgb

    x = frame.drop(columns=[target, id_column])
    for column in x.columns:
        if x[column].dtype == "string":
            x[column] = x[column].astype("category")
    if task == "classification":
        positive = "Yes"
        y = (frame[target] == positive).astype(float).to_numpy()
    else:
        y = frame[target].astype(float).to_numpy()
    stratify = y if task == "classification" else None
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=stratify, random_state=SEED)
    params = {k: v for k, v in DEFAULT_PARAMS.items() if k != "n_estimators"}
    params |= {"objective": "binary:logistic" if task == "classification" else "reg:squarederror", "seed": SEED,
               "max_cat_to_onehot": 4}  # fmt: skip
    started = time.perf_counter()
    booster = xgb.train(params, xgb.DMatrix(x_train, label=y_train, enable_categorical=True),
                        num_boost_round=int(DEFAULT_PARAMS["n_estimators"]))  # fmt: skip
    seconds = time.perf_counter() - started
    predicted = booster.predict(xgb.DMatrix(x_test, enable_categorical=True))
    if task == "classification":
        return float(roc_auc_score(y_test, predicted)), seconds
    return float(np.sqrt(mean_squared_error(y_test, predicted))), seconds


def main() -> None:
    for name in ("telco_churn", "ames"):
        spec = TABLES[name]
        frame = load_table(name)
        metric = "auc" if spec.task == "classification" else "rmse"
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            trained = train_tabular(
                pa.Table.from_pandas(frame, preserve_index=False), name="bench", target=spec.target,
                task=spec.task, folder=Path(folder), params={"seed": SEED},  # type: ignore[arg-type]
            )  # fmt: skip
            ours_s = time.perf_counter() - started
        ours = trained.manifest.metrics[metric]
        theirs, theirs_s = hand_written(frame, spec.target, spec.task, spec.id_column)
        print(f"{name}: {len(frame)} rows, {len(trained.data.plan.features)} features "
              f"({sum(f.kind == 'category' for f in trained.data.plan.features)} text)")  # fmt: skip
        print(f"  sqlml train_tabular : {metric} {ours:.4f}  ({ours_s:.1f} s, plan and split included)")
        print(f"  hand-written xgboost: {metric} {theirs:.4f}  ({theirs_s:.1f} s, fit only)")
        print(f"  difference {ours - theirs:+.4f} {metric}")


if __name__ == "__main__":
    main()
