"""Forecast frequencies: the step a series moves in, inferred from its timestamps or named.

A `Frequency` fixes everything that depends on the step: which calendar features a target gets,
the seasonal cycles the lag features and the seasonal-naive baseline use, how many steps of
history the features need, and how far a forecast may reach (`max_horizon`, the documented bound):

| frequency          | seasonal naive          | max horizon        |
|--------------------|-------------------------|--------------------|
| N minutes (N | 60) | same time yesterday     | one day of steps   |
| hourly             | same hour last week     | 168 hours          |
| daily              | same weekday last week  | 90 days            |
| weekly             | same week last year     | 52 weeks           |
| monthly            | same month last year    | 24 months          |
| quarterly          | same quarter last year  | 8 quarters         |

Monthly and quarterly steps are labelled with the period's first day; weekly steps keep the
weekday of the first timestamp. `regular_wide` turns a long (ts, series, value) frame into one
column a series on a gap-free grid of the frequency, or says exactly why it cannot.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sqlml.errors import TrainingError

WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
AGGREGATES = ("sum", "mean", "median", "min", "max", "first", "last")
FILLS = ("interpolate", "zero")


@dataclass(frozen=True)
class Frequency:
    """One step size and what the forecast features make of it (all counts are in steps)."""

    name: str  # what messages and manifests call it: "15min", "hourly", "daily", ...
    offset: str  # the pandas alias stored in artifacts: "15min", "h", "D", "W-MON", "MS", "QS"
    unit: str  # one step, in words: "15-minute step", "hour", "day", ...
    cycle: int  # the short cycle (hourly: a day)
    cycle_count: int  # how many past cycles the same-position mean averages
    season: int  # the seasonal-naive lag (hourly: a week)
    season_count: int  # how many past seasons the same-position mean averages
    window: int  # the long level window at the origin
    max_horizon: int
    calendar: tuple[str, ...]  # calendar features of the target step
    relative: bool  # targets and features are divided by the level at the origin (trends)
    min_split: int  # the fewest targets each of train, validation and test may hold

    @property
    def units(self) -> str:
        return f"{self.unit}s"

    @property
    def history(self) -> int:
        """The deepest look-back of any feature, over every horizon up to `max_horizon`."""
        seasons_back = math.ceil(self.max_horizon / self.season)
        cycles_back = math.ceil(self.max_horizon / self.cycle)
        return max(
            self.season * (seasons_back + max(1, self.season_count - 1)),
            self.cycle * (cycles_back + self.cycle_count - 1),
            self.max_horizon + self.window,
        )

    def bucket(self, ts: pd.DatetimeIndex) -> pd.DatetimeIndex:
        """The start of the step each timestamp falls in."""
        if self.offset in ("MS", "QS"):
            return _microseconds(ts.to_period(self.offset[0]).to_timestamp())
        if self.offset.startswith("W-"):
            anchor = WEEKDAYS.index(self.offset[2:])
            days = pd.to_timedelta((ts.dayofweek - anchor) % 7, unit="D")
            return _microseconds(ts.normalize() - days)
        return _microseconds(ts.floor(self.offset))

    def grid(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
        return _microseconds(pd.date_range(start, end, freq=self.offset))

    def after(self, last: pd.Timestamp, steps: int) -> pd.DatetimeIndex:
        """The `steps` timestamps that follow `last`, one step apart."""
        return _microseconds(pd.date_range(last, periods=steps + 1, freq=self.offset)[1:])


def _microseconds(index: pd.Index) -> pd.DatetimeIndex:  # type: ignore[type-arg]
    return pd.DatetimeIndex(pd.DatetimeIndex(index).astype("datetime64[us]"))


def minutes(step: int) -> Frequency:
    per_hour, per_day = 60 // step, 1440 // step
    return Frequency(
        name=f"{step}min", offset=f"{step}min", unit=f"{step}-minute step",
        cycle=per_hour, cycle_count=4, season=per_day, season_count=7, window=7 * per_day,
        max_horizon=per_day, calendar=("minute_of_day", "weekday", "day_of_year"), relative=False, min_split=50,
    )  # fmt: skip


# The hourly numbers are the demo's: these values reproduce the features it was tuned with.
HOURLY = Frequency(
    name="hourly", offset="h", unit="hour", cycle=24, cycle_count=7, season=168, season_count=4, window=672,
    max_horizon=168, calendar=("hour", "weekday", "day_of_year"), relative=False, min_split=50,
)  # fmt: skip
DAILY = Frequency(
    name="daily", offset="D", unit="day", cycle=7, cycle_count=8, season=7, season_count=4, window=56,
    max_horizon=90, calendar=("weekday", "day_of_month", "day_of_year"), relative=True, min_split=28,
)  # fmt: skip
MONTHLY = Frequency(
    name="monthly", offset="MS", unit="month", cycle=3, cycle_count=4, season=12, season_count=2, window=24,
    max_horizon=24, calendar=("month",), relative=True, min_split=12,
)  # fmt: skip
QUARTERLY = Frequency(
    name="quarterly", offset="QS", unit="quarter", cycle=2, cycle_count=2, season=4, season_count=2, window=8,
    max_horizon=8, calendar=("quarter",), relative=True, min_split=8,
)  # fmt: skip


def weekly(anchor: str = "MON") -> Frequency:
    return Frequency(
        name="weekly", offset=f"W-{anchor}", unit="week", cycle=4, cycle_count=4, season=52, season_count=2,
        window=52, max_horizon=52, calendar=("week_of_year", "month"), relative=True, min_split=26,
    )  # fmt: skip


_NAMED = {
    "hourly": HOURLY, "hour": HOURLY, "h": HOURLY, "1h": HOURLY, "60min": HOURLY,
    "daily": DAILY, "day": DAILY, "d": DAILY, "1d": DAILY,
    "monthly": MONTHLY, "month": MONTHLY, "ms": MONTHLY, "m": MONTHLY,
    "quarterly": QUARTERLY, "quarter": QUARTERLY, "qs": QUARTERLY, "q": QUARTERLY,
}  # fmt: skip
_MINUTES = re.compile(r"^(\d+)\s*(?:min|mins|minute|minutes|t)$")
_WEEKLY = re.compile(r"^(?:weekly|week|w)(?:-(mon|tue|wed|thu|fri|sat|sun))?$")
KNOWN = "N minutes ('15min', N dividing 60), 'hourly', 'daily', 'weekly', 'monthly', 'quarterly'"


def named(text: str, first: pd.Timestamp | None = None) -> Frequency:
    """The frequency `params.frequency` (or a stored artifact) names; weekly takes the weekday
    of `first` unless the name carries one (`W-SUN`)."""
    key = str(text).strip().lower()
    if key in _NAMED:
        return _NAMED[key]
    match = _MINUTES.match(key)
    if match:
        step = int(match.group(1))
        if step == 60:
            return HOURLY
        if 1 <= step < 60 and 60 % step == 0:
            return minutes(step)
        raise TrainingError(f"a {step}-minute frequency is not supported", hint=f"use {KNOWN}")
    match = _WEEKLY.match(key)
    if match:
        anchor = match.group(1) or (WEEKDAYS[first.dayofweek].lower() if first is not None else "mon")
        return weekly(anchor.upper())
    raise TrainingError(f"unknown frequency {text!r}", hint=f"use {KNOWN}", detail={"frequency": text})


def infer(frame: pd.DataFrame) -> Frequency:
    """The frequency of the median step between consecutive timestamps of each series."""
    steps = [np.diff(np.unique(group.to_numpy(dtype="datetime64[us]"))) for _s, group in frame.groupby("series")["ts"]]
    pooled = np.concatenate(steps) if steps else np.array([], dtype="timedelta64[us]")
    if pooled.size == 0:
        raise TrainingError("not enough history: every series has a single timestamp")
    step = pd.Timedelta(np.median(pooled.astype(np.int64)), unit="us")
    day = pd.Timedelta(days=1)
    if step < day and step >= pd.Timedelta(minutes=1) and step % pd.Timedelta(minutes=1) == pd.Timedelta(0):
        count = int(step / pd.Timedelta(minutes=1))
        if count == 60 or 60 % count == 0:
            return named(f"{count}min")
    elif step == day:
        return DAILY
    elif step == 7 * day:
        return weekly(WEEKDAYS[pd.Timestamp(frame["ts"].min()).dayofweek])
    elif 28 * day <= step <= 31 * day:
        return MONTHLY
    elif 89 * day <= step <= 92 * day:
        return QUARTERLY
    raise TrainingError(
        f"irregular timestamps: the median step between them is {step}, which is no forecast frequency",
        hint=f"set params.frequency to one of {KNOWN}, and params.aggregate (e.g. sum or mean) to bucket the rows",
        detail={"median_step": str(step)},
    )


def regular_wide(
    frame: pd.DataFrame, frequency: str | None = None, aggregate: str | None = None, fill: str | None = None
) -> tuple[pd.DataFrame, Frequency]:
    """Long (ts, series, value) -> one column a series on a gap-free grid of the frequency.

    Without `aggregate`, timestamps between steps, two rows of a series in one step, and steps with
    no row are errors naming the first case; `aggregate` buckets rows into steps (sum, mean, …),
    `fill` fills missing steps (`interpolate`, or `zero` for counts and sales).
    """
    missing = {"ts", "series", "value"} - set(frame.columns)
    if missing:
        raise TrainingError(f"the training data lacks column(s) {', '.join(sorted(missing))}")
    if aggregate is not None and aggregate not in AGGREGATES:
        raise TrainingError(f"unknown aggregate {aggregate!r}", hint=f"use one of {', '.join(AGGREGATES)}")
    if fill is not None and fill not in FILLS:
        raise TrainingError(f"unknown fill {fill!r}", hint=f"use one of {', '.join(FILLS)}")
    frame = frame.assign(ts=pd.DatetimeIndex(frame["ts"]).astype("datetime64[us]"))
    first = pd.Timestamp(frame["ts"].min())
    chosen = named(frequency, first) if frequency else infer(frame)
    ts = pd.DatetimeIndex(frame["ts"])
    steps = chosen.bucket(ts)
    if aggregate is None:
        fixed = chosen.offset not in ("MS", "QS")  # a month is labelled by its first day, whatever the day given
        between = np.asarray(steps != ts) if fixed else np.zeros(len(ts), dtype=bool)
        if between.any():
            at = int(np.argmax(between))
            raise TrainingError(
                f"irregular timestamps: {int(between.sum())} of {len(ts)} fall between {chosen.name} steps "
                f"(first: {ts[at]} in series {frame['series'].iloc[at]!r})",
                hint="set params.aggregate (e.g. sum or mean) to bucket rows into steps, or params.frequency",
                detail={"frequency": chosen.name, "between_steps": int(between.sum())},
            )
        doubled = pd.DataFrame({"series": frame["series"].to_numpy(), "ts": steps}).duplicated()
        if doubled.any():
            at = int(np.argmax(doubled.to_numpy()))
            raise TrainingError(
                f"duplicate timestamps: {int(doubled.sum())} rows repeat a {chosen.unit} of their series "
                f"(first: {steps[at]} in series {frame['series'].iloc[at]!r})",
                hint="set params.aggregate to sum or mean to combine them",
                detail={"frequency": chosen.name, "duplicates": int(doubled.sum())},
            )
    grouped = frame.assign(ts=steps).groupby(["ts", "series"])["value"].agg(aggregate or "mean")
    wide = grouped.unstack("series")
    wide = wide.reindex(chosen.grid(wide.index.min(), wide.index.max()))
    holes = wide.isna()
    if holes.to_numpy().any():
        if fill is None:
            worst = holes.sum().idxmax()
            raise TrainingError(
                f"gaps: {int(holes.to_numpy().sum())} missing {chosen.units} across the series on a {chosen.name} "
                f"grid (series {worst!r} lacks {int(holes[worst].sum())}, first {holes.index[holes[worst]][0]})",
                hint='fill them in the query, or set params.fill to "interpolate" (or "zero" for counts)',
                detail={"frequency": chosen.name, "missing": int(holes.to_numpy().sum())},
            )
        wide = wide.interpolate(method="linear", limit_direction="both") if fill == "interpolate" else wide.fillna(0.0)
    return wide.astype("float64"), chosen
