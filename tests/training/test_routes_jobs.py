"""The `/v1/jobs` routes in-process on the real bridge app: auth, submit, describe, logs, list, cancel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sqlml.bridge.app import create_app
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings

TRAIN = {"Authorization": "Bearer train-token"}


@pytest.fixture
def settings(registry: Registry, tmp_path: Path) -> BridgeSettings:
    return BridgeSettings.model_validate(
        {
            "store": registry.url,
            "tokens": {"train-token": ["train"], "predict-token": ["predict:*"]},
            "jobs_db": str(tmp_path / "jobs.sqlite"),
            "train_roots": [str(tmp_path)],
        }
    )


@pytest.fixture
def client(settings: BridgeSettings) -> Iterator[TestClient]:
    app = create_app(settings)
    manager = app.state.jobs
    with TestClient(app) as test_client:
        yield test_client
    for job_id in manager.launcher.running():  # type: ignore[attr-defined]
        manager.launcher.cancel(job_id, None)


def spec(duckdb_leads: Path, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "leads_api",
        "task": "lead_scoring",
        "source": {"duckdb": str(duckdb_leads), "query": "SELECT income, cars, visits, purchased FROM leads"},
        "target": "purchased",
        "params": {"n_estimators": 10},
    }
    body.update(overrides)
    return body


def test_submit_describe_logs_and_list(
    client: TestClient, settings: BridgeSettings, registry: Registry, duckdb_leads: Path
) -> None:
    answer = client.post("/v1/jobs", json=spec(duckdb_leads), headers=TRAIN)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    assert answer.headers["location"] == f"/v1/jobs/{job_id}"
    assert answer.json()["spec"]["source"]["where"].startswith("duckdb:")

    deadline = time.monotonic() + 120
    while (job := client.get(f"/v1/jobs/{job_id}", headers=TRAIN).json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert job["state"] == "succeeded", job["error"]
    assert job["version"] == 1 and job["promoted"] is True and job["metrics"]["auc"] > 0.7
    assert registry.resolve("leads_api") == 1

    logs = client.get(f"/v1/jobs/{job_id}/logs", params={"follow": True}, headers=TRAIN)
    assert logs.status_code == 200 and logs.headers["content-type"].startswith("text/plain")
    assert f"job {job_id} succeeded" in logs.text

    listing = client.get("/v1/jobs", params={"state": "succeeded"}, headers=TRAIN).json()
    assert [j["id"] for j in listing["jobs"]] == [job_id]
    again = client.post(f"/v1/jobs/{job_id}/cancel", headers=TRAIN).json()
    assert again["state"] == "succeeded"  # a finished job is left as it is

    with TestClient(create_app(settings)) as restarted:  # a new bridge on the same job store
        kept = restarted.get(f"/v1/jobs/{job_id}", headers=TRAIN).json()
        assert (kept["state"], kept["version"], kept["metrics"]) == ("succeeded", 1, job["metrics"])
        assert [j["id"] for j in restarted.get("/v1/jobs", headers=TRAIN).json()["jobs"]] == [job_id]


def test_routes_need_the_train_scope(client: TestClient, duckdb_leads: Path) -> None:
    assert client.get("/v1/jobs").status_code == 401
    refused = client.post("/v1/jobs", json=spec(duckdb_leads), headers={"Authorization": "Bearer predict-token"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("change", "status", "needle"),
    [
        ({"task": "clustering"}, 400, "unknown task"),
        ({"target": "purchase"}, 400, "did you mean 'purchased'"),
        ({"model": "Bad Name"}, 400, "invalid model name"),
        ({"backend": "spark"}, 400, "backend"),
    ],
)
def test_bad_specs_get_the_error_envelope(
    client: TestClient, duckdb_leads: Path, change: dict[str, Any], status: int, needle: str
) -> None:
    answer = client.post("/v1/jobs", json=spec(duckdb_leads, **change), headers=TRAIN)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert needle in f"{error['message']} {error['hint']}"
    assert client.get("/v1/jobs", headers=TRAIN).json()["jobs"] == []


def test_unknown_job_is_404(client: TestClient) -> None:
    answer = client.get("/v1/jobs/nope", headers=TRAIN)
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
