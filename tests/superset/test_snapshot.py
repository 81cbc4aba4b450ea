"""The DuckDB snapshot: written by DuckDB 2.x, opened by the DuckDB 1.x inside Superset's venv.

The forecast here comes from a stand-in `ml.forecast` macro (the file format is under test, not the
model); tests/superset/postgres runs the same writer against real models behind a bridge.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from sqlml.commands.superset import dashboards_module
from tests.superset.stack import REPO, synthetic_power

READ_WITH_DUCKDB_1 = """
import json, sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
dataset_sql = open(sys.argv[2]).read()
print(json.dumps({
    "version": duckdb.__version__,
    "horizon_24": con.execute(
        "SELECT count(DISTINCT ts) FROM ml.forecast('household_power', horizon := 24)").fetchall(),
    "one_series": con.execute(
        "SELECT DISTINCT series FROM ml.forecast('household_power', series := 'sub_metering_1')").fetchall(),
    "p50_only": con.execute(
        "SELECT DISTINCT quantile FROM ml.forecast('household_power', quantiles := ['p50'])").fetchall(),
    "dataset": con.execute(f"SELECT count(*), count(actual), count(p50) FROM ({dataset_sql})").fetchall(),
    "info": con.execute("SELECT model, horizon FROM ml.snapshot_info").fetchall(),
}))
"""

# Column references are qualified: inside a DuckDB macro a bare `series` means the parameter.
STAND_IN_FORECAST = """
CREATE MACRO ml.forecast(model, series := NULL, horizon := 48, quantiles := ['p10', 'p50', 'p90']) AS TABLE
SELECT s.name AS series, h.ts, q.quantile, 1.0 + q.i AS value
FROM (SELECT DISTINCT p.series AS name FROM demo.power AS p) AS s,
     (SELECT last.ts + to_hours(CAST(r.k AS BIGINT)) AS ts
      FROM (SELECT max(p.ts) AS ts FROM demo.power AS p) AS last, range(1, horizon + 1) AS r(k)) AS h,
     (SELECT unnest(quantiles) AS quantile, generate_subscripts(quantiles, 1) AS i) AS q
"""


@pytest.fixture(scope="module")
def snapshot_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("snapshot")
    demo = duckdb.connect(str(work / "demo.duckdb"))
    demo.register("frame", synthetic_power(days=30))
    demo.execute("CREATE TABLE power AS SELECT * FROM frame")
    demo.close()
    con = duckdb.connect()
    con.execute(f"ATTACH '{work / 'demo.duckdb'}' AS demo (READ_ONLY)")
    con.execute("CREATE SCHEMA ml")
    con.execute(STAND_IN_FORECAST)
    summary = dashboards_module("snapshot").write_snapshot(con, work / "superset.duckdb")
    con.close()
    assert summary.tables["main.power"] == 14 * 24 * 5
    assert summary.tables["ml.forecast_results"] == 48 * 5 * 4  # five series, p10/p50/p90/mean
    return summary.path


def test_snapshot_is_complete_and_replaced_atomically(snapshot_file: Path) -> None:
    # DuckDB 2.x reads the file too, and the staging file was renamed into place, not left behind.
    con = duckdb.connect(str(snapshot_file), read_only=True)
    assert con.execute("SELECT count(*) FROM power").fetchone() == (14 * 24 * 5,)
    con.close()
    assert [p.name for p in snapshot_file.parent.iterdir() if p.name.startswith(".")] == []


def test_superset_duckdb_1x_opens_the_snapshot_and_runs_the_dataset_sql(
    snapshot_file: Path, superset_venv: Path
) -> None:
    dataset = yaml.safe_load((REPO / "dashboards/assets/datasets/energy_forecast.yaml").read_text())
    sql_file = snapshot_file.with_name("energy_forecast.sql")
    sql_file.write_text(dataset["sql"])
    completed = subprocess.run(
        [str(superset_venv / "bin/python"), "-c", READ_WITH_DUCKDB_1, str(snapshot_file), str(sql_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    result: dict[str, Any] = json.loads(completed.stdout)
    assert result["version"].startswith("1.")
    assert result["horizon_24"] == [[24]]
    assert result["one_series"] == [["sub_metering_1"]]
    assert result["p50_only"] == [["p50"]]
    rows, actuals, p50s = result["dataset"][0]
    assert actuals == 7 * 24 * 5 - 5 or actuals == 7 * 24 * 5  # the last 7 days of history
    assert p50s == 48 * 5 and rows == actuals + p50s
    assert result["info"] == [["household_power", 48]]
