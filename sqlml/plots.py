"""Charts the demo writes: recent history plus the forecast band, as a PNG (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def forecast_chart(history: pd.DataFrame, forecast: pd.DataFrame, path: Path, title: str) -> Path:
    """History (`ts`, `value`) as a line, then the forecast's p10–p90 band and p50 line.

    `forecast` has columns `ts`, `p10`, `p50`, `p90`.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(11, 4.5), dpi=110)
    axes.plot(history["ts"], history["value"], color="#4a4a4a", linewidth=1.0, label="history")
    axes.fill_between(forecast["ts"], forecast["p10"], forecast["p90"], color="#1f77b4", alpha=0.25, label="p10–p90")
    axes.plot(forecast["ts"], forecast["p50"], color="#1f77b4", linewidth=1.6, label="p50 forecast")
    axes.axvline(forecast["ts"].min(), color="#999999", linestyle=":", linewidth=1.0)
    axes.set_title(title)
    axes.set_ylabel("kW (hourly mean)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    figure.autofmt_xdate()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
