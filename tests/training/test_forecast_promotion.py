"""`if_better` never promotes a forecast that loses to the seasonal naive, not even a first version,
and every policy says when a version loses; a daily job forecasts days."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sqlml.bridge.host import ModelHost
from sqlml.bridge.jobs.runner import apply_policy, execute, source_rules
from sqlml.bridge.jobs.spec import parse_spec
from sqlml.bridge.jobs.store import JobStore
from sqlml.bridge.registry import Registry


def daily_db(folder: Path, days: int = 400) -> Path:
    import duckdb

    rng = np.random.default_rng(2)
    weekly = 1.5 + np.sin(2 * np.pi * np.arange(days) / 7)
    frame = pd.DataFrame(
        {"day": pd.date_range("2022-01-01", periods=days, freq="D").date, "sales": 40 * weekly + rng.normal(0, 4, days)}
    )
    path = folder / "sales.duckdb"
    with duckdb.connect(str(path)) as con:
        con.register("frame", frame)
        con.execute("CREATE OR REPLACE TABLE sales AS SELECT * FROM frame")
    return path


def job(tmp_path: Path, store: JobStore, registry: Registry, promote: str = "if_better", **params: Any) -> Any:
    spec = {
        "model": "sales",
        "task": "forecast",
        "source": {"duckdb": str(daily_db(tmp_path)), "query": "SELECT day, sales FROM sales"},
        "target": "sales",
        "params": {"time_column": "day", "max_depth": 2, **params},
        "promote": promote,
    }
    record = store.create(parse_spec(spec))
    return execute(record.id, store, registry, source_rules(store, [str(tmp_path)]))


def test_a_first_version_that_loses_to_seasonal_naive_is_not_promoted_and_says_so(
    tmp_path: Path, job_store: JobStore, registry: Registry
) -> None:
    done = job(tmp_path, job_store, registry, n_estimators=1, learning_rate=0.05)  # far from converged
    assert done.state == "succeeded", done.error
    assert done.metrics["beats_seasonal_naive"] == 0.0 and done.metrics["mae"] > done.metrics["mae_seasonal_naive"]
    assert done.promoted is False
    assert "not promoted: it loses to the seasonal-naive forecast (MAE" in done.message
    assert "production" not in registry.aliases("sales")
    better = job(tmp_path, job_store, registry, n_estimators=20, learning_rate=0.3)
    assert better.metrics["beats_seasonal_naive"] == 1.0 and better.promoted is True, better.message
    table = ModelHost(registry).forecast("sales", None, 30, ["p50"]).to_pandas()  # thirty days, not hours
    assert len(table) == 30 and (pd.Series(table["ts"]).diff().iloc[1:] == pd.Timedelta(days=1)).all()


def test_if_better_refuses_a_loser_even_with_a_better_metric(
    tmp_path: Path, job_store: JobStore, registry: Registry
) -> None:
    winner = job(tmp_path, job_store, registry, n_estimators=20, learning_rate=0.3)
    assert winner.promoted is True
    stored = registry.manifest("sales", winner.version)
    loser = stored.model_copy(
        update={"metrics": {**stored.metrics, "pinball_loss": 0.0, "mae": 99.0, "beats_seasonal_naive": 0.0}}
    )
    spec = parse_spec(
        {"model": "sales", "task": "forecast", "source": {"duckdb": "x.duckdb", "query": "q"}, "target": "sales"}
    )
    promoted, why = apply_policy(registry, spec, registry.publish(loser, registry.local_path("sales", winner.version)))
    assert promoted is False and "loses to the seasonal-naive forecast (MAE 99 vs" in why
    assert registry.resolve("sales") == winner.version
    always, why = apply_policy(registry, spec.model_copy(update={"promote": "always"}), registry.manifest("sales", 2))
    assert always is True and "loses to the seasonal-naive forecast" in why


def test_never_also_says_when_it_loses(tmp_path: Path, job_store: JobStore, registry: Registry) -> None:
    done = job(tmp_path, job_store, registry, promote="never", n_estimators=1, learning_rate=0.05)
    assert done.promoted is False and "not promoted (promote = never); it loses" in done.message
