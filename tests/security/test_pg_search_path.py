"""search_path hijacking: a role creates a schema whose functions and operators shadow the
pg_catalog names sqlml's SQL uses, and a victim with that schema first in its search_path (before
an explicit pg_catalog) calls every ml function. SECURITY DEFINER functions pin their search_path;
the SECURITY INVOKER ones (ml.predict overloads, ml.predict_query, ml.train) schema-qualify every
name they add. A shadow that ran raises 'HIJACKED'."""

from __future__ import annotations

import psycopg
import pytest

from sqlml.bridge.registry import Registry
from tests.forecast_series import promo_frame, train_promo_models

from .test_pg_tokens import LEAD

pytestmark = [pytest.mark.postgres, pytest.mark.bridge]

# The pg_catalog functions sqlml's own SQL calls, each shadowed with the same argument types.
SHADOWED = [
    ("current_setting", "text, boolean", "text"),
    ("current_setting", "text", "text"),
    ("to_jsonb", "anyelement", "jsonb"),
    ("row_to_json", "record", "json"),
    ("current_database", "", "name"),
    ("now", "", "timestamptz"),
    ("to_regprocedure", "text", "regprocedure"),
]  # and below: the operator jsonb - text, and the aggregate array_agg

CALLS = [
    "SELECT ml.sentiment('good')",
    "SELECT ml.sentiment('good', 'en')",
    f"SELECT ml.predict('lead_score', '{LEAD}'::jsonb)",
    f"SELECT ml.predict('lead_score', '{LEAD}')",  # the text overload casts to jsonb
    "SELECT ml.predict('lead_score', l) FROM (SELECT 3::bigint AS mostype, 1::bigint AS maothers,"
    " 2::bigint AS mgemleef, 5::bigint AS ppersaut) l",  # the record overload
    f"SELECT * FROM ml.predict_batch('lead_score', ARRAY['{LEAD}'::jsonb])",
    "SELECT * FROM ml.sentiment_batch(ARRAY['good'])",
    "SELECT * FROM ml.predict_query('lead_score', 'SELECT 1 AS id, 3::bigint AS mostype, 1::bigint AS maothers,"
    " 2::bigint AS mgemleef, 5::bigint AS ppersaut', 'id')",
    f"SELECT * FROM ml.explain('lead_score', '{LEAD}'::jsonb, 2)",
    "SELECT * FROM ml.models()",
    "SELECT ml.health()",
    "SELECT ml.lead_score(3, 1, 2, 5)",
    "SELECT ml.lead_score(l) FROM (SELECT 3::bigint AS mostype, 1::bigint AS maothers,"
    " 2::bigint AS mgemleef, 5::bigint AS ppersaut, 1 AS id) l",  # the generated row form
    "SELECT * FROM ml.predict_query('lead_score', 'SELECT * FROM public.leads LIMIT 5', 'id')",
    "SELECT * FROM ml.evaluate('lead_score', 'SELECT 3::bigint AS mostype, 1::bigint AS maothers,"
    " 2::bigint AS mgemleef, 5::bigint AS ppersaut, true AS purchased, 1 AS id')",
    "SELECT ml.train('hijack_probe', 'lead_scoring', 'SELECT g::bigint AS a, g % 2 = 0 AS y"
    " FROM generate_series(1, 40) g', 'y')",
    # the forecast model of the `hijack_forecast` fixture; both queries are the caller's
    "SELECT * FROM ml.forecast('hijack_promo', horizon => 3, future => 'SELECT d AS ts, true AS promo FROM"
    " generate_series(timestamp ''2024-01-01'', timestamp ''2024-01-10'', interval ''1 day'') d', history =>"
    " 'SELECT d AS ts, 20.0 AS value FROM generate_series(timestamp ''2023-06-01'', timestamp ''2023-12-31'',"
    " interval ''1 day'') d')",
]


def _shadow_sql(schema: str) -> list[str]:
    statements = [f"CREATE SCHEMA {schema}", f"GRANT USAGE ON SCHEMA {schema} TO PUBLIC"]
    for name, arguments, returns in SHADOWED:
        statements.append(
            f"CREATE FUNCTION {schema}.{name}({arguments}) RETURNS {returns} LANGUAGE plpgsql AS "
            f"$$BEGIN RAISE EXCEPTION 'HIJACKED {name}'; END$$"
        )
    statements += [
        f"CREATE FUNCTION {schema}.hijack_minus(jsonb, text) RETURNS jsonb LANGUAGE plpgsql AS "
        "$$BEGIN RAISE EXCEPTION 'HIJACKED -'; END$$",
        f"CREATE OPERATOR {schema}.- (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = {schema}.hijack_minus)",
        f"CREATE FUNCTION {schema}.hijack_agg(anycompatiblearray, anycompatible) RETURNS anycompatiblearray"
        " LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'HIJACKED array_agg'; END$$",
        f"CREATE AGGREGATE {schema}.array_agg(anycompatible) (SFUNC = {schema}.hijack_agg, STYPE = anycompatiblearray)",
    ]
    return statements


@pytest.fixture
def hijack_forecast(bridge_store: Registry) -> None:
    """A forecast model with a covariate in the served store, for the ml.forecast call above."""
    if "hijack_promo" not in bridge_store.names():
        train_promo_models(bridge_store, promo_frame(), "hijack")


def test_no_ml_function_can_be_redirected_through_search_path(
    conn: psycopg.Connection, make_role, hijack_forecast: None
) -> None:
    attacker, victim = make_role(), make_role("sqlml_admin")
    schema = f"evil_{attacker.name}"
    conn.execute(f'GRANT CREATE ON DATABASE "{conn.info.dbname}" TO {attacker.name}')
    conn.execute(f"GRANT SELECT ON public.leads TO {victim.name}")
    with attacker.connect() as session:
        for statement in _shadow_sql(schema):
            session.execute(statement)
        # the shadows work: called through this search_path they do run
        session.execute(f"SET search_path = {schema}, pg_catalog")
        with pytest.raises(psycopg.Error, match="HIJACKED"):
            session.execute("SELECT current_setting('sqlml.bridge_url', true)")
    with victim.connect() as session:
        session.execute(f"SET search_path = {schema}, pg_catalog, public")
        failures = {}
        for sql in CALLS:
            try:
                session.execute(sql).fetchall()
            except psycopg.Error as error:
                failures[sql] = str(error)
    assert failures == {}


def test_every_function_either_pins_its_search_path_or_is_attacked_above(conn: psycopg.Connection) -> None:
    """Every SECURITY DEFINER function in schema ml pins search_path to pg_catalog, pg_temp; the
    few SECURITY INVOKER ones that cannot (they run the caller's query with the caller's names) are
    each called by the hijack test above."""
    functions = conn.execute(
        "SELECT p.oid::regprocedure::text, p.proname, p.prosecdef,"
        " coalesce('search_path=pg_catalog, pg_temp' = ANY(p.proconfig), false)"
        " FROM pg_proc p WHERE p.pronamespace = 'ml'::regnamespace"
    ).fetchall()
    assert len(functions) > 20
    unpinned_definers = [signature for signature, _, definer, pinned in functions if definer and not pinned]
    assert unpinned_definers == []
    unpinned_invokers = {name for _, name, definer, pinned in functions if not definer and not pinned}
    called = {name for name in unpinned_invokers if any(f"ml.{name}(" in sql for sql in CALLS)}
    assert unpinned_invokers == called, "an unpinned SECURITY INVOKER function the hijack test does not call"
    assert unpinned_invokers  # the check above looked at something: predict_query and train are such
