"""ml.forecast with `future =>` (covariate values) and `history =>` (fresh observations) on the real
PostgreSQL and a real bridge process: both queries run with the caller's rights, the forecast of a
covariate-driven series improves with the future values, a model trained up to day D forecasts
from day D+30's data, and each bad input is a SQL error with SQLSTATE 22023 and a message that
names what is wrong."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from sqlml.bridge.registry import Registry
from tests.forecast_series import TRAINED_DAYS, mae, promo_frame, train_promo_models

pytestmark = [pytest.mark.postgres, pytest.mark.bridge]

FRAME = promo_frame()
DAY_D = FRAME["ts"].iloc[TRAINED_DAYS]  # the first day the models did not see
LATER = FRAME["ts"].iloc[TRAINED_DAYS + 30]  # history up to (not including) D+30


@pytest.fixture
def sales(conn: psycopg.Connection, bridge_store: Registry) -> Iterator[psycopg.Connection]:
    """The models (pgfc_promo, pgfc_plain) in the served store and the table shop_days, made once."""
    if "pgfc_promo" not in bridge_store.names():
        train_promo_models(bridge_store, FRAME, "pgfc")
    exists = conn.execute("SELECT to_regclass('public.shop_days') IS NOT NULL").fetchone()
    if not (exists and exists[0]):
        conn.execute("CREATE TABLE shop_days (ts timestamp PRIMARY KEY, promo boolean, value double precision)")
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO shop_days VALUES (%s, %s, %s)",
                [
                    (t.to_pydatetime(), bool(p), float(v))
                    for t, p, v in FRAME[["ts", "promo", "value"]].itertuples(False)
                ],
            )
    conn.execute("SET TimeZone = 'UTC'")
    yield conn


def _forecast(conn: psycopg.Connection, sql: str) -> list[tuple[object, ...]]:
    return conn.execute(sql).fetchall()


def _error(conn: psycopg.Connection, sql: str) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(sql).fetchall()
    return caught.value


def test_future_covariates_lower_the_error_through_sql(sales: psycopg.Connection) -> None:
    informed = _forecast(
        sales,
        "SELECT ts, value FROM ml.forecast('pgfc_promo', horizon => 30, quantiles => ARRAY['p50'], "
        "future => 'SELECT ts, promo FROM shop_days WHERE ts >= ''2023-11-01''') ORDER BY ts",
    )
    blind = _forecast(
        sales, "SELECT ts, value FROM ml.forecast('pgfc_plain', horizon => 30, quantiles => ARRAY['p50'])"
    )
    actual = FRAME["value"].iloc[TRAINED_DAYS : TRAINED_DAYS + 30].to_numpy()
    assert informed[0][0].replace(tzinfo=None) == DAY_D.to_pydatetime()  # type: ignore[attr-defined]
    with_promo = mae([v for _t, v in informed], actual)
    without = mae([v for _t, v in blind], actual)
    assert with_promo < 0.6 * without, (with_promo, without)


def test_ml_evaluate_measures_a_forecast_on_the_days_after_training(sales: psycopg.Connection) -> None:
    """ml.evaluate on a forecast model: observations after its history, the covariates from the same
    rows; the covariate model's MAE is the lower one, and both are compared with the seasonal naive."""
    query = f"SELECT ts, value, promo FROM shop_days WHERE ts >= ''{DAY_D}'' ORDER BY ts LIMIT 30"
    measured = {
        model: dict(sales.execute(f"SELECT metric, value FROM ml.evaluate('{model}', '{query}')").fetchall())
        for model in ("pgfc_promo", "pgfc_plain")
    }
    promo, plain = measured["pgfc_promo"], measured["pgfc_plain"]
    assert promo["rows"] == plain["rows"] == 30 and promo["skipped_rows"] == 0
    assert promo["mae"] < 0.6 * plain["mae"] and promo["beats_seasonal_naive"] == 1.0
    assert 0.0 <= plain["coverage_p10_p90"] <= 1.0 and plain["mae_seasonal_naive"] > 0


def test_history_thirty_days_later_forecasts_after_it(sales: psycopg.Connection) -> None:
    rows = _forecast(
        sales,
        "SELECT series, ts, quantile FROM ml.forecast('pgfc_plain', horizon => 5, "
        f"history => 'SELECT ts, value FROM shop_days WHERE ts < ''{LATER}''') ORDER BY ts, quantile",
    )
    assert len(rows) == 15 and {r[0] for r in rows} == {"shop"}
    assert min(r[1] for r in rows).replace(tzinfo=None) == LATER.to_pydatetime()  # type: ignore[attr-defined]
    # future and history together: the covariate values of the new steps
    both = _forecast(
        sales,
        "SELECT value FROM ml.forecast('pgfc_promo', 'shop', 5, ARRAY['p50'], "
        "future => 'SELECT ts, promo FROM shop_days', "
        f"history => 'SELECT ts, value FROM shop_days WHERE ts < ''{LATER}''') ORDER BY ts",
    )
    actual = FRAME["value"].iloc[TRAINED_DAYS + 30 : TRAINED_DAYS + 35].to_numpy()
    assert mae([r[0] for r in both], actual) < 2.0


def test_the_old_call_forms_still_work(sales: psycopg.Connection) -> None:
    assert len(_forecast(sales, "SELECT * FROM ml.forecast('pgfc_plain', horizon => 4)")) == 12
    assert len(_forecast(sales, "SELECT * FROM ml.forecast('pgfc_plain', NULL, 2, ARRAY['mean'])")) == 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("ml.forecast('pgfc_promo', horizon => 3)", r"trained with covariates \(promo\).*3 steps missing"),
        (
            "ml.forecast('pgfc_promo', horizon => 30, "
            "future => 'SELECT ts, promo FROM shop_days WHERE ts < ''2023-12-01''')",
            r"missing for 27 of the 30 forecast steps: column\(s\) promo at 2023-12-01",
        ),
        (
            "ml.forecast('pgfc_plain', horizon => 3, future => 'SELECT ts, promo FROM shop_days')",
            'model "pgfc_plain" has no covariates',
        ),
        (
            "ml.forecast('pgfc_plain', horizon => 3, history => 'SELECT ts, value FROM shop_days LIMIT 40')",
            r'too little history: series "shop" has 40 daily observations; model "pgfc_plain" needs at least \d+',
        ),
        (
            "ml.forecast('pgfc_plain', horizon => 3, history => "
            "'SELECT ts, value FROM shop_days WHERE ts NOT BETWEEN ''2023-04-12'' AND ''2023-04-21''')",
            r"gaps: 10 missing days .*first 2023-04-12",
        ),
        (
            "ml._forecast_rows('pgfc_plain', NULL, 3, NULL, '{\"ts\": 1}', NULL)",
            "ml._forecast_rows future takes a JSON array of row objects",
        ),
    ],
)
def test_bad_future_and_history_are_sql_errors_that_say_why(sales: psycopg.Connection, call: str, message: str) -> None:
    error = _error(sales, f"SELECT * FROM {call}")
    assert error.sqlstate == "22023", (error.sqlstate, str(error))
    assert re.search(message, str(error)), str(error)


def test_the_queries_run_with_the_callers_rights(sales: psycopg.Connection, database: str) -> None:
    role = f"fc_reader_{uuid.uuid4().hex[:8]}"
    sales.execute(f"CREATE ROLE {role} LOGIN IN ROLE sqlml_user")
    try:
        with psycopg.connect(f"{database} user={role}", autocommit=True) as own:
            error = _error(
                own, "SELECT * FROM ml.forecast('pgfc_promo', horizon => 3, future => 'SELECT * FROM shop_days')"
            )
            assert error.sqlstate == "42501" and "shop_days" in str(error)
            sales.execute(f"GRANT SELECT ON shop_days TO {role}")
            granted = own.execute(
                "SELECT count(*) FROM ml.forecast('pgfc_promo', horizon => 3, future => 'SELECT * FROM shop_days')"
            ).fetchone()
            assert granted == (9,)  # 3 steps x 3 quantiles
    finally:
        sales.execute(f"REVOKE ALL ON shop_days FROM {role}")
        sales.execute(f"DROP ROLE {role}")
