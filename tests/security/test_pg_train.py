"""Issue #14.1: `ml.train` must read training rows with exactly the caller's privileges. Before, the
caller's query was only EXPLAINed as the caller (which runs no function body) and then run by the
bridge over its own superuser connection: an sqlml_admin read any table, or ran shell commands as
the postgres OS user, by calling a function of its own in the training query. Real PostgreSQL, the
installed extension, a real bridge process with its job routes and worker subprocesses."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.postgres.conftest import ADMIN_TOKEN
from tests.training.sql_jobs import poll_job

pytestmark = [pytest.mark.postgres, pytest.mark.bridge]

SECRET = "hunter2-" + uuid.uuid4().hex


def _job_ids(bridge_url: str) -> set[str]:
    answer = httpx.get(f"{bridge_url}/v1/jobs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    answer.raise_for_status()
    return {job["id"] for job in answer.json()["jobs"]}


@pytest.fixture
def training_table(conn: psycopg.Connection) -> str:
    table = f"sec_train_{uuid.uuid4().hex[:6]}"
    conn.execute(
        f"CREATE TABLE {table} AS SELECT g AS id, (g % 10)::bigint AS a, (g % 7)::bigint AS b, (g % 10 > 4) AS y"
        " FROM generate_series(1, 400) g"
    )
    conn.execute(f"CREATE TABLE IF NOT EXISTS sec_secrets AS SELECT '{SECRET}'::text AS secret")
    return table


def test_a_training_query_cannot_read_beyond_the_callers_rights(
    conn: psycopg.Connection, make_role, bridge_url: str, training_table: str, tmp_path: Path
) -> None:
    mallory = make_role("sqlml_admin")
    conn.execute(f"GRANT SELECT ON {training_table} TO {mallory.name}")
    conn.execute(f'GRANT CREATE ON DATABASE "{conn.info.dbname}" TO {mallory.name}')
    pwned = tmp_path / "pwned"
    schema = f"s_{mallory.name}"
    with mallory.connect() as session:
        session.execute(f"CREATE SCHEMA {schema}")
        session.execute(
            f"CREATE FUNCTION {schema}.leak() RETURNS text LANGUAGE sql AS 'SELECT secret FROM sec_secrets'"
        )
        session.execute(
            f"CREATE FUNCTION {schema}.shell() RETURNS int LANGUAGE plpgsql AS "
            f"$$BEGIN COPY (SELECT 1) TO PROGRAM 'touch {pwned}'; RETURN 1; END$$"
        )
        before = _job_ids(bridge_url)
        attacks = [
            f"SELECT a, b, y, {schema}.leak() AS s FROM {training_table}",
            f"SELECT a, b, y, {schema}.shell() AS s FROM {training_table}",
            f"SELECT a, b, y, pg_read_file('/etc/hostname') AS s FROM {training_table}",
            f"SELECT a, b, y, (SELECT secret FROM sec_secrets) AS s FROM {training_table}",
        ]
        for query in attacks:
            with pytest.raises(psycopg.Error) as caught:
                session.execute("SELECT ml.train('stolen', 'lead_scoring', %s, 'y')", [query])
            assert caught.value.sqlstate == "42501", (query, str(caught.value))
            assert SECRET not in str(caught.value)
        # the SECURITY DEFINER step cannot be handed a source the bridge would read itself
        source = {"dsn": "host=127.0.0.1 user=postgres", "query": "SELECT pg_read_file('/etc/hostname')"}
        spec = {"model": "x", "task": "lead_scoring", "target": "y", "source": source}
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only sends rows uploaded"):
            session.execute("SELECT ml._submit_job(%s::jsonb)", [json.dumps(spec)])
    assert _job_ids(bridge_url) == before  # no attack produced a job
    assert not pwned.exists()


def test_ml_train_trains_on_what_the_caller_can_read(
    conn: psycopg.Connection, make_role, bridge_url: str, training_table: str
) -> None:
    trainer = make_role("sqlml_admin")
    conn.execute(f"GRANT SELECT ON {training_table} TO {trainer.name}")
    model = f"sec_ok_{uuid.uuid4().hex[:6]}"
    with trainer.connect() as session:
        session.execute("SET sqlml.timeout_ms = 30000")
        job_id = session.execute(
            "SELECT ml.train(%s, 'lead_scoring', %s, 'y', '{\"n_estimators\": 5, \"max_depth\": 2}')",
            [model, f"SELECT a, b, y FROM {training_table}"],
        ).fetchone()[0]  # type: ignore[index]
        state, version, _promoted, metrics, error = poll_job(session, job_id, timeout_s=180)
    assert (state, version) == ("succeeded", 1), error
    assert metrics["auc"] > 0.5
    describe = httpx.get(
        f"{bridge_url}/v1/models/{model}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    ).json()
    lineage = json.dumps(describe)
    assert f"as role {trainer.name}" in lineage and SECRET not in lineage


def test_the_definer_steps_cannot_forge_a_jobs_lineage(conn: psycopg.Connection, make_role, bridge_url: str) -> None:
    """An sqlml_admin calls the upload steps itself with made-up rows, then ml._submit_job with a
    spec claiming another database, role and query: refused, since only uploads this session's
    ml.train filled are sent, with the lineage ml.train recorded."""
    forger = make_role("sqlml_admin")
    with forger.connect() as session:
        columns = json.dumps({"columns": [{"name": "a", "pg_type": 20}, {"name": "y", "pg_type": 16}]})
        upload = session.execute("SELECT ml._train_upload(%s)", [columns]).fetchone()[0]  # type: ignore[index]
        rows = json.dumps({"rows": [{"a": i, "y": i % 2 == 0} for i in range(40)]})
        session.execute("SELECT ml._train_upload_rows(%s, %s)", [upload, rows])
        before = _job_ids(bridge_url)
        source = {
            "upload": upload,
            "query": "SELECT * FROM hr.payroll",
            "origin": "postgres database hr as role postgres",
        }
        spec = {"model": "forged", "task": "lead_scoring", "target": "y", "source": source}
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"uploaded by ml\.train in this session"):
            session.execute("SELECT ml._submit_job(%s::jsonb)", [json.dumps(spec)])
    assert _job_ids(bridge_url) == before
