"""Training jobs on a real local Ray cluster (2 CPUs, shared by the module): distributed XGBoost
with 2 workers, DDP fine-tuning of a tiny BERT with 2 gloo workers, per-series forecasts as Ray
tasks."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sqlml.bridge.host import ModelHost
from sqlml.bridge.jobs.runner import JobManager, execute, source_rules
from sqlml.bridge.jobs.spec import parse_spec
from sqlml.bridge.jobs.store import JobStore
from sqlml.bridge.registry import Registry
from sqlml.errors import TrainingError

from .sql_jobs import poll_job, sql_session

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Ray for the module; its address lets worker subprocesses join it (RAY_ADDRESS)."""
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["SQLML_RAY_STORAGE"] = str(tmp_path_factory.mktemp("ray-results"))
    temp_dir = tempfile.mkdtemp(prefix="sqlml-ray-test-", dir="/tmp")  # short: Ray puts sockets there
    ray.init(num_cpus=2, _temp_dir=temp_dir, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        subprocess.run(["rm", "-rf", temp_dir], check=False)


@pytest.mark.postgres
def test_lead_scoring_with_two_ray_workers_from_postgres(
    ray_cluster: str, manager: JobManager, registry: Registry, pg_reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster)  # the worker subprocess joins the test's cluster
    spec = {
        "model": "leads_ray",
        "task": "classification",
        "source": {"dsn": pg_reader, "query": "SELECT income, cars, age, owner, visits, purchased FROM leads"},
        "target": "purchased",
        "params": {"n_estimators": 15, "max_depth": 3, "learning_rate": 0.3},
        "backend": "ray",
        "resources": {"workers": 2, "cpus_per_worker": 1},
    }
    done = manager.wait(manager.submit(spec).id, timeout=300)
    assert done.state == "succeeded", done.error
    assert done.promoted and done.metrics["workers"] == 2.0 and done.metrics["auc"] > 0.8
    assert registry.resolve("leads_ray") == done.version == 1
    assert registry.describe("leads_ray").lineage["backend"] == "ray"
    scored = ModelHost(registry).predict(
        "leads_ray",
        pa.table({"income": [9, 0], "cars": [3, 0], "age": [40.0, 40.0], "owner": [True, True], "visits": [1, 1]}),
    )
    high, low = scored.column("probability").to_pylist()
    assert high > 0.5 > low


@pytest.mark.postgres
def test_ml_train_from_sql_on_the_ray_backend_then_serves_through_sql(
    ray_cluster: str, pg_leads: str, bridge_url: str, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole SQL path with `backend => 'ray'`: ml.train -> bridge job route -> worker subprocess ->
    Ray Train's XGBoost trainer with 2 workers on the test's cluster -> registry -> ml.predict."""
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster)  # the bridge's worker subprocess joins the test's cluster
    with sql_session(pg_leads, bridge_url) as conn:
        job_id = conn.execute(
            "SELECT ml.train('leads_sql_ray', 'classification',"
            " 'SELECT income, cars, age, owner, visits, purchased FROM leads', 'purchased',"
            """ '{"n_estimators": 15, "max_depth": 3, "learning_rate": 0.3,"""
            """ "resources": {"workers": 2, "cpus_per_worker": 1}}', backend => 'ray')"""
        ).fetchone()[0]  # type: ignore[index]
        backend = conn.execute("SELECT backend FROM ml.job(%s)", [job_id]).fetchone()
        assert backend == ("ray",)
        state, version, promoted, metrics, error = poll_job(conn, job_id, timeout_s=300)
        assert (state, version, promoted) == ("succeeded", 1, True), error
        assert metrics["workers"] == 2.0 and metrics["auc"] > 0.8
        high, low = (
            conn.execute(
                "SELECT (ml.predict('leads_sql_ray', %s::jsonb)->>'probability')::float8", [json.dumps(row)]
            ).fetchone()[0]  # type: ignore[index]
            for row in (
                {"income": 9, "cars": 3, "age": 40.0, "owner": True, "visits": 1},
                {"income": 0, "cars": 0, "age": 40.0, "owner": True, "visits": 1},
            )
        )
        assert high > 0.5 > low
    lineage = registry.describe("leads_sql_ray").lineage
    assert lineage["backend"] == "ray" and lineage["source"].startswith("postgres database sqlml_train_")


def reviews_db(folder: Path) -> Path:
    import duckdb

    rng = np.random.default_rng(0)
    good = ["great", "delicious", "love", "perfect", "excellent"]
    bad = ["awful", "stale", "broken", "bland", "refund"]
    rows = []
    for i in range(120):
        great = i % 2 == 0
        words = [*rng.choice(good if great else bad, 4), "tea", "box"]
        rows.append({"body": " ".join(words), "great": great})
    path = folder / "reviews.duckdb"
    with duckdb.connect(str(path)) as con:
        con.register("frame", pd.DataFrame(rows))
        con.execute("CREATE TABLE reviews AS SELECT * FROM frame")
    return path


def reviews_job(model: str, folder: Path, params: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A sentiment job spec over `reviews_db(folder)`: the text `body`, the target `great`."""
    source = {"duckdb": str(reviews_db(folder)), "query": "SELECT body, great FROM reviews"}
    return {"model": model, "task": "sentiment", "source": source, "target": "great", "params": params, **spec}


def run_in_process(store: JobStore, registry: Registry, spec: dict[str, Any], root: Path) -> Any:
    """Run the job in this process, reading DuckDB files under `root`."""
    record = store.create(parse_spec(spec))
    return execute(record.id, store, registry, source_rules(store, [str(root)]))


def test_sentiment_ddp_fine_tune_with_two_gloo_workers(
    ray_cluster: str, job_store: JobStore, registry: Registry, tiny_bert: Path, tmp_path: Path
) -> None:
    params = {
        "base_model": str(tiny_bert),
        "epochs": 3,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "max_length": 16,
        "freeze_embeddings": False,
        "serve_precision": "bfloat16",
    }
    spec = reviews_job("tiny_sentiment", tmp_path, params, backend="ray", resources={"workers": 2})
    done = run_in_process(job_store, registry, spec, tmp_path)
    assert done.state == "succeeded", done.error
    assert done.metrics["workers"] == 2.0 and done.metrics["samples_per_second"] > 0
    assert 0.0 <= done.metrics["auc"] <= 1.0
    manifest = registry.describe("tiny_sentiment")
    assert manifest.runtime == "sentiment" and set(manifest.params["calibration"]) == {
        "encoder_weight",
        "lexical_weight",
        "bias",
    }
    assert manifest.params["precision"] == "bfloat16"
    labels = ModelHost(registry).predict("tiny_sentiment", pa.table({"text": ["great love tea", None]}))
    assert labels.column("label").to_pylist()[0] in ("positive", "negative", "neutral", "mixed")
    assert labels.column("label").to_pylist()[1] is None


def test_an_unknown_serve_precision_fails_the_job_before_training(
    job_store: JobStore, registry: Registry, tiny_bert: Path, tmp_path: Path
) -> None:
    spec = reviews_job("fp8_sentiment", tmp_path, {"base_model": str(tiny_bert), "serve_precision": "fp8"})
    with pytest.raises(TrainingError, match=r"params\.serve_precision must be one of float32, bfloat16, not 'fp8'"):
        run_in_process(job_store, registry, spec, tmp_path)
    assert "fp8_sentiment" not in registry.names()


def power_db(folder: Path, hours: int = 1600) -> Path:
    import duckdb

    ts = pd.date_range("2024-01-01", periods=hours, freq="h")
    rng = np.random.default_rng(1)
    daily = np.sin(2 * np.pi * np.arange(hours) / 24)
    frame = pd.concat(
        [
            pd.DataFrame({"ts": ts, "meter": "kitchen", "kwh": 2 + daily + rng.normal(0, 0.1, hours)}),
            pd.DataFrame({"ts": ts, "meter": "Heat Pump", "kwh": 5 - 2 * daily + rng.normal(0, 0.2, hours)}),
        ]
    )
    path = folder / "power.duckdb"
    with duckdb.connect(str(path)) as con:
        con.register("frame", frame)
        con.execute("CREATE TABLE power AS SELECT * FROM frame")
    return path


def test_per_series_forecasts_fit_as_parallel_ray_tasks(
    ray_cluster: str, job_store: JobStore, registry: Registry, tmp_path: Path
) -> None:
    spec = {
        "model": "meters",
        "task": "forecast",
        "source": {"duckdb": str(power_db(tmp_path)), "query": "SELECT ts, meter, kwh FROM power"},
        "target": "kwh",
        "params": {"series_column": "meter", "n_estimators": 8, "max_depth": 3, "learning_rate": 0.6},  # beats naive
        "backend": "ray",
    }
    done = run_in_process(job_store, registry, spec, tmp_path)
    assert done.state == "succeeded", done.error
    assert registry.names() == ["meters_heat_pump", "meters_kitchen"]
    assert "meters_kitchen v1" in done.message
    for name in registry.names():
        assert registry.resolve(name) == 1  # each series' model promoted to production
        assert registry.describe(name).lineage["backend"] == "ray"
    forecast = ModelHost(registry).forecast("meters_kitchen", None, 24, ["p10", "p50", "p90"])
    assert forecast.num_rows == 24 * 3


def test_cancel_stops_the_ray_train_workers(
    ray_cluster: str, manager: JobManager, registry: Registry, duckdb_leads: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    monkeypatch.setenv("RAY_ADDRESS", ray_cluster)
    spec = {
        "model": "leads_cancelled",
        "task": "lead_scoring",
        "source": {"duckdb": str(duckdb_leads), "query": "SELECT income, cars, purchased FROM leads"},
        "target": "purchased",
        "params": {"n_estimators": 1_000_000, "max_depth": 6},
        "backend": "ray",
        "resources": {"workers": 2, "cpus_per_worker": 1},
    }
    record = manager.submit(spec)
    deadline = time.monotonic() + 120
    while ray.available_resources().get("CPU", 0.0) > 0.0:  # both Train workers hold their CPU
        assert time.monotonic() < deadline, "the Ray Train workers never started"
        assert not manager.store.get(record.id).final, manager.store.get(record.id).error
        time.sleep(0.2)
    assert manager.cancel(record.id).state == "cancelled"
    while ray.available_resources().get("CPU", 0.0) < 2.0:  # the driver is gone: Ray frees its workers
        assert time.monotonic() < deadline + 60, "the Ray Train workers outlived the cancel"
        time.sleep(0.2)
    assert registry.names() == []


def public_db(folder: Path, name: str, rows: int) -> Path:
    """The first `rows` rows of the public table `name` (text columns, NULLs) as a DuckDB file."""
    import duckdb

    from sqlml.data.tables import load_table

    path = folder / f"{name}.duckdb"
    with duckdb.connect(str(path)) as con:
        con.register("frame", load_table(name).head(rows))
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
    return path


@pytest.mark.parametrize(
    ("table", "target", "metric"),
    [("penguins", "species", "accuracy"), ("ames", "sale_price", "r2")],
)
def test_categorical_multiclass_and_regression_fit_on_two_ray_workers_as_they_fit_locally(
    ray_cluster: str, job_store: JobStore, registry: Registry, tmp_path: Path, table: str, target: str, metric: str
) -> None:
    """Text columns as native categories, NULLs as missing: the same plan trains on Ray Train's two
    workers and in this process, and the two versions score alike (each worker sees half the rows,
    so the trees differ a little, not the features)."""
    source = {"duckdb": str(public_db(tmp_path, table, 600)), "query": f"SELECT * FROM {table}"}
    params = {"n_estimators": 30, "max_depth": 4, "learning_rate": 0.3}
    versions = {}
    for backend in ("ray", "local"):
        spec = {"model": f"{table}_{backend}", "task": "classification" if metric == "accuracy" else "regression",
                "source": source, "target": target, "params": params, "backend": backend,
                "resources": {"workers": 2, "cpus_per_worker": 1}}  # fmt: skip
        done = run_in_process(job_store, registry, spec, tmp_path)
        assert done.state == "succeeded", done.error
        versions[backend] = registry.describe(f"{table}_{backend}")
    ray_model, local_model = versions["ray"], versions["local"]
    assert ray_model.lineage["backend"] == "ray" and ray_model.metrics["workers"] == 2.0
    assert ray_model.signature == local_model.signature
    assert any(c.type == "text" for c in ray_model.signature.inputs)  # island / neighborhood: categories
    assert ray_model.metrics[metric] > 0.8 and abs(ray_model.metrics[metric] - local_model.metrics[metric]) < 0.08
    inputs = [c.name for c in ray_model.signature.inputs]
    rows = pa.Table.from_pandas(_rows_of(source, 20)[inputs], preserve_index=False)
    scored = ModelHost(registry).predict(f"{table}_ray", rows)
    assert scored.num_rows == 20 and scored.column(0).null_count == 0


def _rows_of(source: dict[str, str], limit: int) -> pd.DataFrame:
    import duckdb

    with duckdb.connect(source["duckdb"], read_only=True) as con:
        return con.execute(f"{source['query']} LIMIT {limit}").df()
