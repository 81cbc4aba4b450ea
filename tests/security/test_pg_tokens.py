"""Attacks on the bridge token from inside PostgreSQL: a role points `sqlml.bridge_url` at its own
listener, a superuser borrows another role's token, a role granted one model scores another, a
role without `sqlml_user` calls anything. Real PostgreSQL, the installed extension and a real
bridge process (tests/postgres/conftest.py); the attacker's listener is a real HTTP server."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.postgres.conftest import ADMIN_TOKEN, USER_TOKEN

from .conftest import Captured

pytestmark = [pytest.mark.postgres, pytest.mark.bridge]

LEAD = '{"mostype": 3, "maothers": 1, "mgemleef": 2, "ppersaut": 5}'

# One call of every function that reads the bridge token, as a member of sqlml_admin may make it.
TOKEN_READING_CALLS = [
    "SELECT ml.health()",
    "SELECT ml.sentiment('good')",
    "SELECT ml.sentiment('good', 'en')",
    f"SELECT ml.predict('lead_score', '{LEAD}'::jsonb)",
    f"SELECT * FROM ml.predict_batch('lead_score', ARRAY['{LEAD}'::jsonb])",
    "SELECT * FROM ml.sentiment_batch(ARRAY['good'])",
    "SELECT * FROM ml.predict_query('lead_score', 'SELECT 1 AS id, 3::bigint AS mostype', 'id')",
    f"SELECT * FROM ml.explain('lead_score', '{LEAD}'::jsonb, 2)",
    "SELECT * FROM ml.forecast('power', NULL, 3)",
    "SELECT * FROM ml.forecast('power', NULL, 3, future => 'SELECT 1 AS ts', history => 'SELECT 1 AS ts')",
    "SELECT ml._forecast_rows('power', NULL, 3, NULL, '[]', NULL)",
    "SELECT * FROM ml.models()",
    "SELECT ml.lead_score(3, 1, 2, 5)",
    "SELECT * FROM ml.sync()",
    "SELECT ml.deploy('lead_score', 1)",
    "SELECT ml.rollback('lead_score')",
    "SELECT * FROM ml.job('abc')",
    "SELECT ml.grant('lead_score', 'sqlml_user')",
    "SELECT ml.train('m', 'lead_scoring', 'SELECT 1 AS a, true AS y', 'y')",
]


def _sqlstate(conn: psycopg.Connection, sql: str) -> str | None:
    try:
        conn.execute(sql).fetchall()
    except psycopg.Error as error:
        return error.sqlstate
    return None


def test_a_session_chosen_url_never_receives_the_token(make_role, listener: Captured) -> None:
    attacker = make_role("sqlml_admin")
    with attacker.connect() as session:
        session.execute(f"SET sqlml.bridge_url = '{listener.url}'")
        states = {sql: _sqlstate(session, sql) for sql in TOKEN_READING_CALLS}
    assert listener.requests, "the calls never reached the listener: the test proves nothing"
    received = listener.everything()
    assert b"authorization" not in received.lower()
    assert ADMIN_TOKEN.encode() not in received
    # every call failed on the listener's 401 (SQLSTATE 28000), none quietly went to the real bridge
    assert {sql: state for sql, state in states.items() if state != "28000"} == {}


@pytest.mark.parametrize(
    "spelling",
    [
        "{listener}/",  # the same URL spelt differently still gets no token
        "{bridge}@{listener_host}",  # user info that names the real bridge
        "{bridge}/../",
        "{bridge}/v1",  # another path on the real bridge's host
    ],
)
def test_url_spellings_do_not_carry_the_token(make_role, listener: Captured, bridge_url: str, spelling: str) -> None:
    attacker = make_role("sqlml_user")
    url = spelling.format(listener=listener.url, bridge=bridge_url, listener_host=listener.url.split("//")[1])
    with attacker.connect() as session:
        session.execute(f"SET sqlml.bridge_url = '{url}'")
        state = _sqlstate(session, "SELECT ml.health()")
    assert ADMIN_TOKEN.encode() not in listener.everything()
    assert b"authorization" not in listener.everything().lower()
    assert state is not None  # refused: a bad URL (22023), the listener's 401 or the bridge's 401


def test_the_stored_url_gets_the_token_and_a_401_elsewhere_says_why(make_role, listener: Captured) -> None:
    user = make_role("sqlml_user")
    with user.connect() as session:
        assert session.execute("SELECT ml.health()->>'status'").fetchone() == ("ready",)  # the stored URL
        session.execute(f"SET sqlml.bridge_url = '{listener.url}'")
        with pytest.raises(psycopg.Error) as caught:
            session.execute("SELECT ml.health()")
    assert caught.value.sqlstate == "28000"
    hint = caught.value.diag.message_hint or ""
    assert "only sent to" in hint and "RESET sqlml.bridge_url" in hint


def test_a_superuser_is_not_a_member_of_every_role(conn: psycopg.Connection, make_role) -> None:
    """Issue #14.4: after ml.set_token(<predict:sentiment token>, some_role) the superuser kept
    that role's token, since pg_has_role counts a superuser as a member of every role."""
    some_role = make_role()
    conn.execute("SELECT ml.set_token(%s, %s)", (USER_TOKEN, some_role.name))  # predict:sentiment only
    with psycopg.connect(conn.info.dsn, autocommit=True) as superuser:
        scored = superuser.execute("SELECT ml.predict('lead_score', %s::jsonb)", [LEAD]).fetchone()
    assert scored is not None and scored[0]["probability"] is not None
    # a real member of the role does use its token
    member = make_role(some_role.name, "sqlml_user")
    with member.connect() as session:
        assert _sqlstate(session, f"SELECT ml.predict('lead_score', '{LEAD}'::jsonb)") == "42501"
        assert session.execute("SELECT (ml.sentiment('good')).label").fetchone() == ("positive",)


def test_a_role_granted_one_model_cannot_score_another(conn: psycopg.Connection, make_role) -> None:
    analyst = make_role("sqlml_user")
    conn.execute("SELECT ml.grant('lead_score', %s)", [analyst.name])
    with analyst.connect() as session:
        assert session.execute("SELECT ml.predict('lead_score', %s::jsonb)", [LEAD]).fetchone()[0] is not None
        assert session.execute("SELECT ml.lead_score(3, 1, 2, 5)").fetchone()[0] is not None
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
            session.execute("SELECT ml.sentiment('good')")
        assert "ml.grant" in (caught.value.diag.message_hint or "")
        assert _sqlstate(session, "SELECT ml.grant('sentiment', current_user)") == "42501"  # not an admin
        assert _sqlstate(session, "SELECT token FROM sqlml_private.bridge_tokens") == "42501"
    granted = conn.execute("SELECT granted_to FROM ml.models() WHERE name = 'lead_score'").fetchone()
    assert granted is not None and analyst.name in granted[0]
    conn.execute("SELECT ml.revoke('lead_score', %s)", [analyst.name])
    with analyst.connect() as session:
        assert session.execute("SELECT (ml.sentiment('good')).label").fetchone() == ("positive",)


def test_a_grant_to_a_group_limits_its_members(conn: psycopg.Connection, make_role) -> None:
    group = f"sqlml_grp_{uuid.uuid4().hex[:6]}"
    conn.execute(f"CREATE ROLE {group} NOLOGIN")
    try:
        conn.execute(f"GRANT sqlml_user TO {group}")
        member = make_role(group)
        conn.execute("SELECT ml.grant('sentiment', %s)", [group])
        with member.connect() as session:
            assert session.execute("SELECT (ml.sentiment('good')).label").fetchone() == ("positive",)
            assert _sqlstate(session, f"SELECT ml.predict('lead_score', '{LEAD}'::jsonb)") == "42501"
    finally:
        conn.execute(f"DELETE FROM sqlml_private.model_grants WHERE role_oid = '{group}'::regrole")
        conn.execute(f"DROP ROLE {group}")


def test_grant_of_an_unknown_model_or_role_fails(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute("SELECT ml.grant('lead_scor', 'sqlml_user')")
    assert caught.value.sqlstate == "42704" and "lead_score" in (caught.value.diag.message_hint or "")
    with pytest.raises(psycopg.Error, match="does not exist"):
        conn.execute("SELECT ml.grant('lead_score', 'no_such_role_x')")
    with pytest.raises(psycopg.Error, match="invalid model name"):
        conn.execute("SELECT ml.grant(E'lead_score\\n', 'sqlml_user')")


def test_a_role_without_sqlml_user_can_execute_no_ml_function(conn: psycopg.Connection, make_role) -> None:
    stranger = make_role()
    executable = conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'ml'::regnamespace"
        " AND has_function_privilege(%s, p.oid, 'EXECUTE')",
        [stranger.name],
    ).fetchall()
    assert executable == []
    functions = conn.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'ml'::regnamespace").fetchone()
    assert functions is not None and functions[0] > 20  # the check above looked at something
    with stranger.connect() as session:
        for sql in [*TOKEN_READING_CALLS, "SELECT ml.set_token('x')", "SELECT ml._load_helper()"]:
            assert _sqlstate(session, sql) == "42501", sql
        assert _sqlstate(session, "SELECT * FROM sqlml_private.bridge_tokens") == "42501"


def test_a_token_with_a_newline_is_refused_and_never_echoed(conn: psycopg.Connection, make_role) -> None:
    """A token read from a file with its trailing newline once reached every caller's error message
    (http.client quoted the invalid header)."""
    role = make_role("sqlml_user")
    secret = "tok-" + uuid.uuid4().hex
    with pytest.raises(psycopg.Error) as caught:
        conn.execute("SELECT ml.set_token(%s, %s)", [secret + "\n", role.name])
    assert caught.value.sqlstate == "22023" and secret not in str(caught.value)
    assert "trailing newline" in (caught.value.diag.message_hint or "")
    stored = conn.execute(
        "SELECT count(*) FROM sqlml_private.bridge_tokens WHERE role_oid = %s::regrole", [role.name]
    ).fetchone()
    assert stored == (0,)
