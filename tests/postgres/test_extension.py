"""The sqlml extension in the real PostgreSQL 15 against a real bridge process."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from .conftest import ROOT, USER_TOKEN, free_port

sys.path.insert(0, str(ROOT / "extension" / "tests"))
from stub_bridge import StubBehaviour, stub_bridge

pytestmark = [pytest.mark.postgres, pytest.mark.bridge]
LEAD = '{"mostype": 3, "maothers": 1, "mgemleef": 2, "ppersaut": 5}'


def scalar(conn: psycopg.Connection, sql: str, *params: object) -> object:
    row = conn.execute(sql, params or None).fetchone()
    return row[0] if row else None


def test_typed_function_predict_batch_and_query_agree(conn: psycopg.Connection) -> None:
    # per-row calls cost one HTTP request each: 200 rows are enough to compare
    typed_sql = "SELECT id, ml.lead_score(mostype, maothers, mgemleef, ppersaut) FROM leads WHERE id <= 200"
    typed = dict(conn.execute(typed_sql).fetchall())
    batch = conn.execute(
        "SELECT ord, (result->>'probability')::float8 FROM ml.predict_batch('lead_score', "
        "ARRAY(SELECT to_jsonb(l) - 'id' FROM leads l ORDER BY id))"
    ).fetchall()
    conn.execute("SET sqlml.batch_size = 1000")  # 2,500 rows: three chunks through the cursor
    query = dict(conn.execute(
        "SELECT key::int, (result->>'probability')::float8 FROM ml.predict_query('lead_score', "
        "'SELECT id, mostype, maothers, mgemleef, ppersaut FROM leads', 'id')").fetchall())  # fmt: skip
    assert len(typed) == 200 and len(batch) == len(query) == 2500
    assert [o for o, _ in batch] == list(range(1, 2501))
    for ord_, probability in batch[:200]:
        assert probability == pytest.approx(typed[ord_], abs=1e-6) == pytest.approx(query[ord_], abs=1e-6)
    assert 0 < min(typed.values()) < max(typed.values()) < 1
    one = scalar(conn, "SELECT ml.predict('lead_score', %s::jsonb)", LEAD)
    record = scalar(conn, "SELECT ml.predict('lead_score', l) FROM (SELECT 3::bigint AS mostype, "
                    "1::bigint AS maothers, 2::bigint AS mgemleef, 5::bigint AS ppersaut) l")  # fmt: skip
    assert one == record and set(one) == {"probability"}


def test_nulls(conn: psycopg.Connection) -> None:
    assert scalar(conn, "SELECT ml.lead_score(NULL, 1, 2, 3)") is None
    assert scalar(conn, "SELECT ml.sentiment(NULL)") is None
    assert scalar(conn, "SELECT ml.predict('lead_score', NULL::jsonb)") is None
    assert scalar(conn, """SELECT ml.predict('lead_score', '{"mostype": null, "maothers": 1, "mgemleef": 2,
                            "ppersaut": 5}')""") is None  # fmt: skip
    rows = conn.execute(
        f"SELECT ord, result FROM ml.predict_batch('lead_score', ARRAY['{LEAD}'::jsonb, NULL, '{LEAD}'])"
    ).fetchall()
    assert [r[0] for r in rows] == [1, 2, 3] and rows[1][1] is None and rows[0][1] == rows[2][1]
    texts = conn.execute("SELECT * FROM ml.sentiment_batch(ARRAY['good', NULL, 'awful'])").fetchall()
    assert texts == [
        (1, "positive", 0.9, 0.9, 0.05, 0.05, 0.0),
        (2, None, None, None, None, None, None),
        (3, "negative", 0.7, 0.2, 0.7, 0.1, 0.0),
    ]


def test_sentiment_and_models(conn: psycopg.Connection) -> None:
    scored = conn.execute("SELECT * FROM ml.sentiment('a great day')").fetchone()
    assert scored == ("positive", 0.9, 0.9, 0.05, 0.05, 0.0)
    models = {r[0]: r for r in conn.execute("SELECT name, version, versions, aliases, task FROM ml.models()")}
    assert models["lead_score"][1:] == (1, [1, 2], {"production": 1}, "classification")
    assert "sentiment" in models


def test_sentiment_with_a_language_reads_english_only(conn: psycopg.Connection) -> None:
    """Aurora's detect_sentiment(text, 'en') form: 'en' in any case scores as ml.sentiment(text);
    another language is a 22023 error, or NULL and a WARNING with sqlml.on_error = 'null'."""
    plain = conn.execute("SELECT * FROM ml.sentiment('a great day')").fetchone()
    assert conn.execute("SELECT * FROM ml.sentiment('a great day', 'en')").fetchone() == plain
    assert conn.execute("SELECT * FROM ml.sentiment('a great day', ' EN ')").fetchone() == plain
    with pytest.raises(psycopg.Error) as raised:
        conn.execute("SELECT ml.sentiment('une belle journée', 'fr')")
    assert raised.value.sqlstate == "22023"
    assert "ml.sentiment reads 'en' only, not 'fr'" in str(raised.value)
    conn.execute("SET sqlml.on_error = 'null'")
    notices: list[str] = []
    conn.add_notice_handler(lambda diagnostic: notices.append(str(diagnostic.message_primary)))
    try:
        assert conn.execute("SELECT ml.sentiment('une belle journée', 'fr')").fetchone() == (None,)
    finally:
        conn.execute("RESET sqlml.on_error")
    assert any("reads 'en' only" in n for n in notices), notices


def test_explain(conn: psycopg.Connection) -> None:
    rows = conn.execute("SELECT feature, value, contribution FROM ml.explain('lead_score', %s::jsonb, 2)",
                        (LEAD,)).fetchall()  # fmt: skip
    assert len(rows) == 2 and {r[0] for r in rows} <= {"mostype", "maothers", "mgemleef", "ppersaut"}
    assert abs(rows[0][2]) >= abs(rows[1][2])


def test_deploy_and_rollback(conn: psycopg.Connection) -> None:
    conn.execute("SELECT ml.deploy('lead_score', 2)")
    assert scalar(conn, "SELECT aliases FROM ml.models() WHERE name = 'lead_score'") == {"production": 2}
    assert scalar(conn, "SELECT ml.rollback('lead_score')") == 1
    assert scalar(conn, "SELECT aliases FROM ml.models() WHERE name = 'lead_score'") == {"production": 1}


def test_every_object_is_documented_and_marked(conn: psycopg.Connection) -> None:
    undocumented = conn.execute(
        "SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'ml'::regnamespace "
        "AND obj_description(p.oid, 'pg_proc') IS NULL"
    ).fetchall()
    assert undocumented == []
    markings_sql = (
        "SELECT proname || '/' || pronargs, provolatile::text || proparallel::text || prosecdef::text"
        " || proisstrict::text FROM pg_proc WHERE pronamespace = 'ml'::regnamespace"
    )
    markings = dict(conn.execute(markings_sql).fetchall())
    assert markings["predict_query/3"] == "vrfalsetrue"  # SECURITY INVOKER on purpose
    assert markings["predict_batch/2"] == "vrtruetrue"
    assert markings["sync/0"] == "vutruefalse"
    assert markings["lead_score/4"].endswith("truetrue")


# --- bad input ------------------------------------------------------------------------------


def expect_error(conn: psycopg.Connection, sql: str, sqlstate: str, message: str, *params: object) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(sql, params or None)
    error = caught.value
    assert error.sqlstate == sqlstate, error.diag.message_primary
    assert message in (error.diag.message_primary or ""), error.diag.message_primary
    assert "Traceback" not in (error.diag.message_primary or "")
    assert scalar(conn, "SELECT 1") == 1  # the session stays usable
    return error


def test_wrong_type_names_the_column(conn: psycopg.Connection) -> None:
    bad = '{"mostype": "three", "maothers": 1, "mgemleef": 2, "ppersaut": 5}'
    expect_error(conn, "SELECT ml.predict('lead_score', %s::jsonb)", "22023", '"mostype"', bad)


def test_missing_and_extra_keys(conn: psycopg.Connection) -> None:
    # a row with none of the inputs is an error; one with some missing scores NULL, as in a batch
    error = expect_error(conn, "SELECT ml.predict('lead_score', '{}')", "22023", "missing every input column")
    assert "mostype" in str(error)
    assert scalar(conn, """SELECT ml.predict('lead_score', '{"mostype": 1}')""") is None
    extra = LEAD[:-1] + ', "mostipe": 1}'
    error = expect_error(conn, "SELECT ml.predict('lead_score', %s::jsonb)", "22023", '"mostipe"', extra)
    assert "mostype" in (error.diag.message_hint or "")
    expect_error(conn, "SELECT ml.predict('lead_score', '[1, 2]')", "22023", "JSON object")


def test_unknown_model_has_a_hint(conn: psycopg.Connection) -> None:
    error = expect_error(conn, "SELECT ml.predict('lead_scor', %s::jsonb)", "42704", '"lead_scor" not found', LEAD)
    assert "lead_score" in (error.diag.message_hint or "")


@pytest.mark.parametrize("name", ["lead_score'; DROP TABLE leads; --", "../../etc/passwd", "lead_score/x"])
def test_injection_through_model_names(conn: psycopg.Connection, name: str) -> None:
    expect_error(conn, "SELECT ml.predict(%s, %s::jsonb)", "42602", "invalid model name", name, LEAD)
    assert scalar(conn, "SELECT count(*) FROM leads") == 2500


@pytest.mark.parametrize(
    ("query", "sqlstate"),
    [
        ("SELECT id, mostype FROM leads; DROP TABLE leads", "42601"),
        ("DELETE FROM leads RETURNING *", "42601"),
        ("WITH d AS (DELETE FROM leads RETURNING *) SELECT * FROM d", "0A000"),
        ("SELECT id FROM leads) AS q; DROP TABLE leads; SELECT (1", "42601"),
        ("SELECT 1 AS id INTO leads_copy", "42601"),
    ],
)
def test_injection_through_queries(conn: psycopg.Connection, query: str, sqlstate: str) -> None:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute("SELECT * FROM ml.predict_query('lead_score', %s, 'id')", (query,))
    assert caught.value.sqlstate == sqlstate, caught.value.diag.message_primary
    assert scalar(conn, "SELECT count(*) FROM leads") == 2500
    assert scalar(conn, "SELECT to_regclass('leads_copy')") is None


def test_key_is_quoted_as_an_identifier(conn: psycopg.Connection) -> None:
    expect_error(conn, "SELECT * FROM ml.predict_query('lead_score', 'SELECT * FROM leads', "
                 "'id) FROM leads; DROP TABLE leads; --')", "42703", "has no column")  # fmt: skip
    assert scalar(conn, "SELECT count(*) FROM leads") == 2500


def test_ten_megabyte_text(conn: psycopg.Connection) -> None:
    try:
        label = scalar(conn, "SELECT (ml.sentiment(repeat('good ', 2000000))).label")
        assert label == "positive"
    except psycopg.Error as error:  # a bridge body limit is fine too, as long as it is a clear error
        assert error.sqlstate in ("22023", "54000"), error.diag.message_primary
        assert scalar(conn, "SELECT 1") == 1


def test_bridge_down_fails_fast_then_recovers(conn: psycopg.Connection, bridge_url: str) -> None:
    conn.execute(f"SET sqlml.bridge_url = 'http://127.0.0.1:{free_port()}'")
    started = time.monotonic()
    error = expect_error(conn, "SELECT ml.predict('lead_score', %s::jsonb)", "08001", "cannot reach the bridge", LEAD)
    assert time.monotonic() - started < 2
    assert "sqlml.bridge_url" in (error.diag.message_hint or "")
    conn.execute("SET sqlml.on_error = 'null'")
    with conn.cursor() as cur:
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        cur.execute("SELECT ml.predict('lead_score', %s::jsonb)", (LEAD,))
        assert cur.fetchone() == (None,)
        assert any("cannot reach the bridge" in n for n in notices)
    conn.execute("RESET sqlml.on_error")
    conn.execute(f"SET sqlml.bridge_url = '{bridge_url}'")
    assert scalar(conn, "SELECT ml.predict('lead_score', %s::jsonb)", LEAD) is not None


def test_slow_bridge_fails_within_timeout(conn: psycopg.Connection) -> None:
    with stub_bridge(StubBehaviour(delay_s=3.0)) as (url, _):
        conn.execute(f"SET sqlml.bridge_url = '{url}'")
        conn.execute("SET sqlml.timeout_ms = 300")
        started = time.monotonic()
        expect_error(conn, "SELECT ml.predict('lead', '{\"a\": 1, \"b\": 2}')", "57014", "did not answer within 300 ms")
        assert time.monotonic() - started < 1.5
    conn.execute("RESET sqlml.bridge_url")
    conn.execute("RESET sqlml.timeout_ms")


def test_null_mode_keeps_the_good_rows(conn: psycopg.Connection) -> None:
    conn.execute("SET sqlml.on_error = 'null'")
    bad = '{"mostype": "x", "maothers": 1, "mgemleef": 2, "ppersaut": 5}'
    rows = conn.execute(
        "SELECT ord, result FROM ml.predict_batch('lead_score', "
        f"ARRAY['{LEAD}'::jsonb, '{bad}'::jsonb, '{LEAD}'::jsonb])"
    ).fetchall()
    conn.execute("RESET sqlml.on_error")
    assert rows[1][1] is None and rows[0][1] is not None and rows[2][1] is not None


# --- security -------------------------------------------------------------------------------


@pytest.fixture
def login_role(conn: psycopg.Connection, database: str) -> Iterator[tuple[str, str]]:
    role = f"sqlml_t_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role} LOGIN")
    conn.execute(f"CREATE TABLE secret_{role} AS SELECT 1 AS id, 1::bigint AS mostype")
    try:
        yield role, f"{database} user={role}".replace("user=postgres", "")
    finally:
        conn.execute(f"DROP TABLE secret_{role}")
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_only_sqlml_user_may_call(conn: psycopg.Connection, login_role: tuple[str, str]) -> None:
    role, dsn = login_role
    with psycopg.connect(dsn, autocommit=True) as user:
        expect_error(user, "SELECT ml.predict('lead_score', %s::jsonb)", "42501", "permission denied", LEAD)
    conn.execute(f"GRANT sqlml_user TO {role}")
    with psycopg.connect(dsn, autocommit=True) as user:
        assert scalar(user, "SELECT ml.predict('lead_score', %s::jsonb)", LEAD) is not None
        expect_error(user, "SELECT token FROM sqlml_private.bridge_tokens", "42501", "permission denied")
        expect_error(user, "SELECT ml.set_token('x')", "42501", "permission denied")
        expect_error(user, "SELECT * FROM ml.sync()", "42501", "permission denied")
        # predict_query runs as the caller: a table the caller cannot read stays unreadable
        expect_error(user, f"SELECT * FROM ml.predict_query('lead_score', 'SELECT * FROM secret_{role}', 'id')",
                     "42501", "permission denied")  # fmt: skip


def test_per_role_token_limits_models(conn: psycopg.Connection, login_role: tuple[str, str]) -> None:
    role, dsn = login_role
    conn.execute(f"GRANT sqlml_user TO {role}")
    conn.execute("SELECT ml.set_token(%s, %s)", (USER_TOKEN, role))  # scope predict:sentiment only
    time.sleep(0)  # the token cache is per session; the new session reads it fresh
    with psycopg.connect(dsn, autocommit=True) as user:
        assert scalar(user, "SELECT (ml.sentiment('good')).label") == "positive"
        expect_error(user, "SELECT ml.predict('lead_score', %s::jsonb)", "42501", "", LEAD)
    conn.execute("SELECT ml.set_token(NULL, %s)", (role,))


def test_docs_cover_every_function_and_setting(conn: psycopg.Connection) -> None:
    docs = (ROOT / "docs" / "postgres.md").read_text()
    names = {r[0] for r in conn.execute(
        "SELECT proname FROM pg_proc p WHERE pronamespace = 'ml'::regnamespace AND proname NOT LIKE '\\_%' "
        "AND NOT EXISTS (SELECT 1 FROM ml._generated g WHERE g.model = p.proname)")}  # fmt: skip
    missing = [n for n in sorted(names) if f"ml.{n}" not in docs]
    assert missing == []
    for setting in ("sqlml.bridge_url", "sqlml.timeout_ms", "sqlml.batch_size", "sqlml.on_error",
                    "sqlml.sentiment_model"):  # fmt: skip
        assert setting in docs
