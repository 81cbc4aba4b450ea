"""`ml.train` and `ml.job` end to end: PostgreSQL with the sqlml extension, a real bridge with the
job routes, the rows read by the bridge from the same database; the new version then scores
through `ml.predict`."""

from __future__ import annotations

import json

import pytest

from sqlml.bridge.registry import Registry

from .sql_jobs import poll_job, sql_session

pytestmark = pytest.mark.postgres


def test_ml_train_then_ml_job_then_the_version_serves_through_sql(
    pg_leads: str, bridge_url: str, registry: Registry
) -> None:
    import psycopg

    with sql_session(pg_leads, bridge_url) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):  # checked as the caller, before the bridge
            conn.execute("SELECT ml.train('leads_sql', 'lead_scoring', 'SELECT * FROM nope', 'purchased')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # no way around ml.train's check
            conn.execute("""SELECT ml._submit_job('{"model": "x"}')""")
        with pytest.raises(psycopg.Error, match="unknown task 'clustering'"):
            conn.execute("SELECT ml.train('leads_sql', 'clustering', 'SELECT * FROM leads', 'purchased')")

        job_id = conn.execute(
            "SELECT ml.train('leads_sql', 'classification', 'SELECT income, cars, age, owner, purchased FROM leads',"
            """ 'purchased', '{"n_estimators": 15, "max_depth": 3, "learning_rate": 0.3}')"""
        ).fetchone()[0]  # type: ignore[index]
        state, version, promoted, metrics, error = poll_job(conn, job_id, timeout_s=120)
        assert (state, version, promoted) == ("succeeded", 1, True), error
        assert metrics["auc"] > 0.8

        features = {"income": 9, "cars": 3, "age": 40.0, "owner": True}
        scored = conn.execute("SELECT ml.predict('leads_sql', %s::jsonb)", [json.dumps(features)]).fetchone()
        assert scored is not None and scored[0]["probability"] > 0.5
    lineage = registry.describe("leads_sql").lineage
    assert lineage["source"].startswith("postgres database sqlml_train_")
