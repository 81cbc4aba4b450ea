"""The same calls as in DuckDB: the row form `ml.<model>(t)`, `ml.predict(model, t)` and
`ml.predict_query` over `SELECT *`, where ids and the target are not features and are left out."""

from __future__ import annotations

import uuid

import psycopg
import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.bridge]


@pytest.fixture
def crm(conn: psycopg.Connection) -> str:
    """A table as users have them: an id, the model's four inputs, the target, a note."""
    table = f"crm_{uuid.uuid4().hex[:6]}"
    conn.execute(
        f"CREATE TABLE {table} AS SELECT g AS lead_id, (g % 10)::bigint AS mostype, (g % 3)::bigint AS maothers,"
        " (g % 5)::bigint AS mgemleef, (g % 7)::bigint AS ppersaut, g % 2 = 0 AS purchased, 'n' || g AS note"
        " FROM generate_series(1, 50) g"
    )
    return table


def test_the_row_form_matches_the_typed_call(conn: psycopg.Connection, crm: str) -> None:
    rows = conn.execute(
        f"SELECT ml.lead_score(l), ml.lead_score(l.mostype, l.maothers, l.mgemleef, l.ppersaut),"
        f" (ml.predict('lead_score', l)->>'probability')::float8 FROM {crm} l ORDER BY lead_id"
    ).fetchall()
    assert len(rows) == 50 and all(r[0] is not None and r[0] == r[1] == r[2] for r in rows)


def test_the_row_form_names_a_missing_input(conn: psycopg.Connection, crm: str) -> None:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(f"SELECT ml.lead_score(l) FROM (SELECT lead_id, mostype, maothers FROM {crm}) l")
    assert caught.value.sqlstate == "22023"
    assert "mgemleef" in str(caught.value) and "ppersaut" in (caught.value.diag.message_hint or "")


def test_predict_query_over_select_star_leaves_out_ids_and_the_target(conn: psycopg.Connection, crm: str) -> None:
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    scored = dict(
        conn.execute(
            f"SELECT key::int, (result->>'probability')::float8 FROM ml.predict_query('lead_score',"
            f" 'SELECT * FROM {crm}', 'lead_id')"
        ).fetchall()
    )
    typed = dict(conn.execute(f"SELECT lead_id, ml.lead_score(l) FROM {crm} l").fetchall())
    assert scored == typed and len(scored) == 50
    assert any("purchased, note are not inputs of lead_score" in n for n in notices), notices


def test_a_query_with_none_of_the_inputs_is_still_an_error(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute("SELECT * FROM ml.predict_query('lead_score', 'SELECT 1 AS id, 2 AS nothing', 'id')")
    assert "mostype" in str(caught.value) + (caught.value.diag.message_hint or "")
