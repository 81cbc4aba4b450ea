"""Superset connects to PostgreSQL as a least-privilege role, and provisioning harms nothing it did not create.

Real PostgreSQL: `prepare_postgres` (what `sqlml superset up` and `provision` run before they
import the dashboards) provisions a scratch database, then every check connects with the very URI
Superset is given. The role has a per-run name so the shared server's `sqlml_superset` is left alone.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import errors, sql

from sqlml.commands.superset import Step, dashboards_module, prepare_postgres
from tests.superset.stack import REPO, build_demo_db, synthetic_power

pytestmark = pytest.mark.postgres

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
DATABASE = f"sqlml_role_test_{os.getpid()}"
ROLE = f"sqlml_superset_t{os.getpid()}"
BRIDGE_URL = "http://127.0.0.1:9"  # never called: provisioning only stores it
SECRET_TOKEN = "bridge-token-that-superset-must-never-see"


@dataclass
class Provisioned:
    target: Any
    login: Any
    demo_db: Path
    uri: str
    output: str


def superset_conninfo(uri: str) -> str:
    """Superset's SQLAlchemy URI as libpq reads it (the driver part dropped, nothing else changed)."""
    return uri.replace("postgresql+psycopg2://", "postgresql://", 1)


def provision_again(provisioned: Provisioned, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    prepare_postgres(
        provisioned.target, provisioned.login, bridge_url=BRIDGE_URL, demo_db=provisioned.demo_db, step=Step()
    )
    return capsys.readouterr().out


def admin(database: str = DATABASE) -> psycopg.Connection:
    return psycopg.connect(ADMIN.replace("dbname=postgres", f"dbname={database}"), autocommit=True)


def drop_database(database: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


def drop_role(role: str) -> None:
    """Only this run's roles; the privileges they hold in DATABASE go first."""
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
    if exists:
        with admin() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    postgres = dashboards_module("postgres")
    work = tmp_path_factory.mktemp("superset-role")
    demo_db = build_demo_db(work / "demo.duckdb", synthetic_power(days=2))
    target = postgres.PostgresTarget(database=DATABASE)
    login = postgres.SupersetLogin(role=ROLE)
    drop_database(DATABASE)
    lines: list[str] = []
    try:
        counts = postgres.prepare_database(target, demo_db, BRIDGE_URL, login, report=lines.append)
        assert counts["reviews"] > 0 and counts["leads"] > 0
        with admin() as conn:
            conn.execute("SELECT ml.set_token(%s, NULL)", [SECRET_TOKEN])
            conn.execute("ANALYZE sqlml_private.bridge_tokens")
        yield Provisioned(target, login, demo_db, target.superset_uri(login), "\n".join(lines))
    finally:
        drop_database(DATABASE)
        drop_role(ROLE)


@pytest.fixture
def as_superset(provisioned: Provisioned) -> Iterator[psycopg.Connection]:
    with psycopg.connect(superset_conninfo(provisioned.uri), autocommit=True) as conn:
        yield conn


def test_the_uri_superset_gets_names_the_role_not_the_superuser(
    provisioned: Provisioned, as_superset: psycopg.Connection
) -> None:
    user = urlsplit(provisioned.uri).username
    assert user == ROLE and user != "postgres"
    assert as_superset.execute("SELECT current_user").fetchone() == (ROLE,)
    assert dashboards_module("postgres").DEFAULT_ROLE == "sqlml_superset"


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM sqlml_private.bridge_tokens",
        "SELECT token FROM sqlml_private.bridge_tokens",
        "COPY sqlml_private.bridge_tokens TO STDOUT",
        "SELECT ml.set_token('a token of my own', NULL)",
        "SELECT pg_read_file('postgresql.conf')",
    ],
)
def test_the_bridge_token_cannot_be_read(as_superset: psycopg.Connection, statement: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
        as_superset.execute(statement)


def test_the_token_shows_up_in_no_catalog_the_role_can_read(as_superset: psycopg.Connection) -> None:
    privileges = as_superset.execute(
        "SELECT has_schema_privilege(n.oid, 'USAGE'), has_table_privilege(c.oid, 'SELECT') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'sqlml_private' AND c.relname = 'bridge_tokens'"
    ).fetchall()
    assert privileges == [(False, False)]
    stats = as_superset.execute("SELECT * FROM pg_stats WHERE tablename = 'bridge_tokens'").fetchall()
    assert SECRET_TOKEN not in repr(stats)


def test_the_role_cannot_create_anything(as_superset: psycopg.Connection) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        as_superset.execute("CREATE TABLE public.superset_was_here (x int)")
    with pytest.raises(errors.InsufficientPrivilege):
        as_superset.execute("CREATE VIEW ml.superset_was_here AS SELECT 1")
    with pytest.raises(errors.InsufficientPrivilege):
        as_superset.execute("CREATE SCHEMA superset_was_here")


def test_a_table_the_user_made_is_not_readable(provisioned: Provisioned, as_superset: psycopg.Connection) -> None:
    with admin() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.salaries (name text, salary int)")
        conn.execute("INSERT INTO public.salaries VALUES ('ada', 100)")
    with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
        as_superset.execute("SELECT * FROM public.salaries")


def test_the_demo_tables_are_readable(as_superset: psycopg.Connection) -> None:
    for relation in ("reviews", "leads", "lead_features"):
        count = as_superset.execute(sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(relation)))
        assert count.fetchone()[0] > 0, relation  # type: ignore[index]
    can_score = as_superset.execute("SELECT has_function_privilege('ml.sentiment(text)', 'EXECUTE')").fetchone()
    assert can_score == (True,)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT ml.sentiment('great coffee')",
        "SELECT * FROM ml.sentiment_batch(ARRAY['great coffee'])",
        "SELECT * FROM ml.predict_query('lead_score', 'SELECT * FROM public.lead_features', 'lead_id')",
        "SELECT * FROM ml.explain('lead_score', (SELECT to_jsonb(l) - 'lead_id' FROM public.leads l LIMIT 1), 3)",
    ],
)
def test_the_role_may_score_what_the_dashboards_score(as_superset: psycopg.Connection, statement: str) -> None:
    # No bridge listens at BRIDGE_URL: getting as far as calling it means every privilege check passed.
    with pytest.raises(psycopg.OperationalError, match="cannot reach the bridge"):
        as_superset.execute(statement).fetchall()


def test_the_role_is_no_superuser_and_only_in_sqlml_user(as_superset: psycopg.Connection) -> None:
    attributes = as_superset.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert attributes == (False, False, False, False)
    memberships = as_superset.execute(
        "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
    ).fetchall()
    assert memberships == [("sqlml_user",)]
    assert as_superset.execute("SELECT pg_has_role('sqlml_admin', 'MEMBER')").fetchone() == (False,)


def test_user_objects_over_demo_tables_survive_a_second_run(
    provisioned: Provisioned, capsys: pytest.CaptureFixture[str]
) -> None:
    with admin() as conn:
        conn.execute("CREATE VIEW public.leads_view AS SELECT lead_id, purchased FROM public.leads WHERE lead_id < 50")
        conn.execute("CREATE TABLE public.my_notes AS SELECT review_id, 'kept' AS note FROM public.reviews LIMIT 7")
        before = (
            conn.execute("SELECT * FROM public.leads_view ORDER BY lead_id").fetchall(),
            conn.execute("SELECT * FROM public.my_notes ORDER BY review_id").fetchall(),
        )
    try:
        output = provision_again(provisioned, capsys)
        with admin() as conn:
            after = (
                conn.execute("SELECT * FROM public.leads_view ORDER BY lead_id").fetchall(),
                conn.execute("SELECT * FROM public.my_notes ORDER BY review_id").fetchall(),
            )
        assert before[0] and len(before[1]) == 7
        assert after == before
        assert "created" not in output  # nothing was (re)created on the second run
    finally:
        with admin() as conn:
            conn.execute("DROP VIEW IF EXISTS public.leads_view")
            conn.execute("DROP TABLE IF EXISTS public.my_notes")


def test_provisioning_prints_each_database_setting_it_changes(
    provisioned: Provisioned, capsys: pytest.CaptureFixture[str]
) -> None:
    assert f"ALTER DATABASE {DATABASE} SET sqlml.bridge_url: not set -> '{BRIDGE_URL}'" in provisioned.output
    assert f"ALTER DATABASE {DATABASE} SET sqlml.timeout_ms: not set -> '60000'" in provisioned.output
    with admin() as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET sqlml.timeout_ms = '5000'").format(sql.Identifier(DATABASE)))
    output = provision_again(provisioned, capsys)
    assert f"ALTER DATABASE {DATABASE} SET sqlml.timeout_ms: '5000' -> '60000'" in output
    assert f"sqlml.bridge_url = '{BRIDGE_URL}' (unchanged)" in output


def test_a_demo_table_with_dependents_is_never_dropped(
    provisioned: Provisioned, capsys: pytest.CaptureFixture[str]
) -> None:
    provision = dashboards_module("provision")
    with admin() as conn:
        # The demo data "changed shape": the table must be replaced, and a user's view depends on it.
        conn.execute("ALTER TABLE public.leads ADD COLUMN extra int")
        conn.execute("CREATE VIEW public.leads_view AS SELECT lead_id FROM public.leads")
        rows_before = conn.execute("SELECT count(*) FROM public.leads").fetchone()
    try:
        with pytest.raises(provision.ProvisionError, match="view leads_view depends on table leads"):
            provision_again(provisioned, capsys)
        with admin() as conn:
            assert conn.execute("SELECT count(*) FROM public.leads_view").fetchone() == rows_before
    finally:
        with admin() as conn:
            conn.execute("DROP VIEW IF EXISTS public.leads_view")
            conn.execute("ALTER TABLE public.leads DROP COLUMN IF EXISTS extra")


def test_a_foreign_key_to_demo_rows_stops_the_refresh(
    provisioned: Provisioned, capsys: pytest.CaptureFixture[str]
) -> None:
    provision = dashboards_module("provision")
    with admin() as conn:
        conn.execute("CREATE TABLE public.calls (lead_id bigint REFERENCES public.leads (lead_id))")
        conn.execute("INSERT INTO public.calls SELECT min(lead_id) FROM public.leads")
        before = conn.execute("SELECT count(*) FROM public.leads").fetchone()
    try:
        with pytest.raises(provision.ProvisionError, match=r"public\.leads cannot be refreshed"):
            provision_again(provisioned, capsys)
        with admin() as conn:
            assert conn.execute("SELECT count(*) FROM public.leads").fetchone() == before
            assert conn.execute("SELECT count(*) FROM public.calls").fetchone() == (1,)
    finally:
        with admin() as conn:
            conn.execute("DROP TABLE IF EXISTS public.calls")


def test_a_demo_table_without_dependents_is_replaced_when_its_columns_change(
    provisioned: Provisioned, capsys: pytest.CaptureFixture[str], as_superset: psycopg.Connection
) -> None:
    with admin() as conn:
        conn.execute("ALTER TABLE public.reviews ADD COLUMN extra int")
    output = provision_again(provisioned, capsys)
    assert "public.reviews: columns changed, replacing the table" in output
    columns = as_superset.execute("SELECT * FROM public.reviews LIMIT 1").description
    assert columns is not None and "extra" not in {column.name for column in columns}


def test_an_object_provisioning_did_not_create_stops_it(tmp_path: Path) -> None:
    postgres, provision = dashboards_module("postgres"), dashboards_module("provision")
    database = f"{DATABASE}_foreign"
    drop_database(database)
    with admin("postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        with admin(database) as conn:
            conn.execute("CREATE TABLE public.reviews (my_own text)")
            conn.execute("INSERT INTO public.reviews VALUES ('mine')")
        demo_db = build_demo_db(tmp_path / "demo.duckdb", synthetic_power(days=2))
        target = postgres.PostgresTarget(database=database)
        with pytest.raises(provision.ProvisionError, match=re.escape("public.reviews exists but was not created")):
            postgres.prepare_database(target, demo_db, BRIDGE_URL, postgres.SupersetLogin(role=ROLE), report=print)
        with admin(database) as conn:
            assert conn.execute("SELECT * FROM public.reviews").fetchall() == [("mine",)]
    finally:
        drop_database(database)


def test_a_role_provisioning_did_not_create_is_left_alone(provisioned: Provisioned) -> None:
    postgres, provision = dashboards_module("postgres"), dashboards_module("provision")
    foreign = f"{ROLE}_foreign"
    with admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(foreign)))
    try:
        with pytest.raises(provision.ProvisionError, match=f"role {foreign} exists but was not created"):
            postgres.prepare_database(
                provisioned.target, provisioned.demo_db, BRIDGE_URL, postgres.SupersetLogin(role=foreign), report=print
            )
        with admin() as conn:
            row = conn.execute(
                "SELECT rolcanlogin, pg_has_role(oid, 'sqlml_user', 'MEMBER') FROM pg_roles WHERE rolname = %s",
                [foreign],
            ).fetchone()
        assert row == (False, False)
    finally:
        drop_role(foreign)


# --- docker/postgres-init.sql --------------------------------------------------------------------

INIT_SQL = REPO / "docker" / "postgres-init.sql"
ROLE_PART_START = "-- The role Superset connects as"


def run_init_role_part(database: str, checks: str, password: str | None) -> subprocess.CompletedProcess[str]:
    """The init script's role part in a transaction that is rolled back, then `checks`, through psql."""
    text = INIT_SQL.read_text()
    assert ROLE_PART_START in text
    role_part = text[text.index(ROLE_PART_START) :].replace("sqlml_demo", database)
    env = {key: value for key, value in os.environ.items() if key != "SQLML_SUPERSET_DB_PASSWORD"}
    if password is not None:
        env["SQLML_SUPERSET_DB_PASSWORD"] = password
    script = f"BEGIN;\n{role_part}\n{checks}\nROLLBACK;\n"
    command = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-X", "-At", "-v", "ON_ERROR_STOP=1"]
    return subprocess.run(command, input=script, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_compose_init_script_creates_the_role_with_the_right_memberships(provisioned: Provisioned) -> None:
    role = dashboards_module("superset_role")
    checks = """
SELECT 'attributes', rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolpassword IS NOT NULL
  FROM pg_authid WHERE rolname = 'sqlml_superset';
SELECT 'member', g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
  WHERE m.member = 'sqlml_superset'::regrole;
SELECT 'admin', pg_has_role('sqlml_superset', 'sqlml_admin', 'MEMBER');
SELECT 'comment', shobj_description('sqlml_superset'::regrole, 'pg_authid');
"""
    completed = run_init_role_part(DATABASE, checks, password="from-the-environment")
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert "attributes|t|f|f|f|t" in lines
    assert [line for line in lines if line.startswith("member|")] == ["member|sqlml_user"]
    assert "admin|f" in lines
    assert f"comment|{role.ROLE_COMMENT}" in lines  # marked as provisioning's, so provision may grant it


def test_the_compose_init_script_needs_the_password_from_the_environment(provisioned: Provisioned) -> None:
    completed = run_init_role_part(DATABASE, "", password=None)
    assert completed.returncode != 0
    assert "SQLML_SUPERSET_DB_PASSWORD is not set" in completed.stderr
