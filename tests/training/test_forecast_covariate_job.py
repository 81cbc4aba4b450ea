"""A forecast job takes the other numeric and boolean columns of its query as covariates, leaves
text columns out and says so in its lineage, and the version it publishes forecasts with the
covariate's future values (and refuses to without them)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from sqlml.bridge.host import ModelHost
from sqlml.bridge.jobs.runner import execute, source_rules
from sqlml.bridge.jobs.spec import parse_spec
from sqlml.bridge.jobs.store import JobStore
from sqlml.bridge.registry import Registry
from sqlml.errors import InvalidInput
from tests.forecast_series import promo_frame


def test_a_forecast_job_trains_on_its_covariates(tmp_path: Path, job_store: JobStore, registry: Registry) -> None:
    frame = promo_frame().rename(columns={"ts": "day", "value": "sales"}).drop(columns="series")
    frame["note"] = "text is left out"
    frame["temperature"] = 10.0
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as con:
        con.register("frame", frame)
        con.execute("CREATE TABLE shop AS SELECT * FROM frame WHERE day < DATE '2023-11-28'")
    spec = {
        "model": "shop",
        "task": "forecast",
        "source": {"duckdb": str(path), "query": "SELECT day, promo, note, temperature, sales FROM shop"},
        "target": "sales",
        "params": {"time_column": "day", "n_estimators": 20, "max_depth": 3, "exclude": ["temperature"]},
        "promote": "always",
    }
    record = job_store.create(parse_spec(spec))
    done = execute(record.id, job_store, registry, source_rules(job_store, [str(tmp_path)]))
    assert done.state == "succeeded", done.error
    manifest = registry.describe("shop")
    assert manifest.lineage["covariates"] == ["promo"]
    assert manifest.lineage["left_out_columns"] == ["note", "temperature"]
    assert manifest.params["covariates"] == [{"name": "promo", "type": "boolean"}]
    host = ModelHost(registry)
    future = pa.Table.from_pandas(frame[["day", "promo"]].rename(columns={"day": "ts"}), preserve_index=False)
    table = host.forecast("shop", None, 14, ["p50"], future)
    assert table.num_rows == 14 and str(table["ts"][0].as_py().date()) == "2023-11-28"
    with pytest.raises(InvalidInput, match=r"trained with covariates \(promo\)"):
        host.forecast("shop", None, 14, ["p50"])
