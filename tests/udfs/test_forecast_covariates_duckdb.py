"""DuckDB's ml.forecast with `future :=` and `history :=` query texts, embedded and through a real
`sqlml serve` process (JSON rows over HTTP): the covariate-driven series forecasts better with its
future promo days, a model trained up to day D forecasts from day D+30's data, and bad inputs are
errors that name what is wrong. The per-model table macro takes the same parameters."""

from __future__ import annotations

import re
from collections.abc import Iterator

import duckdb
import pandas as pd
import pytest

from sqlml.bridge.client import LocalClient, ModelClient
from sqlml.bridge.http_client import BridgeClient
from sqlml.bridge.registry import Registry
from sqlml.udfs import register
from tests.bridge.conftest import BridgeProcess
from tests.forecast_series import TRAINED_DAYS, mae, promo_frame, train_promo_models

pytestmark = pytest.mark.bridge

FRAME = promo_frame()
LATER = FRAME["ts"].iloc[TRAINED_DAYS + 30]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    registry = Registry(tmp_path_factory.mktemp("duck-forecast") / "store")
    train_promo_models(registry, FRAME, "duck")
    return registry


@pytest.fixture(scope="module")
def bridge(store: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    process = BridgeProcess(store.url, tmp_path_factory.mktemp("logs")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module", params=["embedded", "bridge"])
def con(
    request: pytest.FixtureRequest, store: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[duckdb.DuckDBPyConnection]:
    client: ModelClient
    if request.param == "bridge":
        client = BridgeClient(request.getfixturevalue("bridge").url, token="admin-token", timeout=30.0)
    else:
        client = LocalClient(store)
    connection = duckdb.connect()
    register(connection, client)
    connection.register("frame", FRAME)
    connection.execute("CREATE TABLE shop_days AS SELECT ts, promo, value FROM frame")
    yield connection
    connection.close()
    if isinstance(client, BridgeClient):
        client.close()


def _values(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[object, ...]]:
    return con.sql(sql).fetchall()


def test_future_covariates_lower_the_error(con: duckdb.DuckDBPyConnection) -> None:
    informed = _values(
        con,
        "SELECT ts, value FROM ml.forecast('duck_promo', horizon := 30, quantiles := ['p50'], "
        "future := 'SELECT ts, promo FROM shop_days') ORDER BY ts",
    )
    blind = _values(
        con, "SELECT ts, value FROM ml.forecast('duck_plain', horizon := 30, quantiles := ['p50']) ORDER BY ts"
    )
    actual = FRAME["value"].iloc[TRAINED_DAYS : TRAINED_DAYS + 30].to_numpy()
    assert informed[0][0] == FRAME["ts"].iloc[TRAINED_DAYS]
    assert mae([v for _t, v in informed], actual) < 0.6 * mae([v for _t, v in blind], actual)


def test_history_thirty_days_later_forecasts_after_it(con: duckdb.DuckDBPyConnection) -> None:
    rows = _values(
        con,
        "SELECT ts FROM ml.forecast('duck_plain', horizon := 5, quantiles := ['p50'], "
        f"history := 'SELECT ts, value FROM shop_days WHERE ts < TIMESTAMP ''{LATER}''') ORDER BY ts",
    )
    assert [r[0] for r in rows] == list(pd.date_range(LATER, periods=5, freq="D"))
    typed = _values(
        con,
        "SELECT value FROM ml.duck_promo(horizon := 5, quantiles := ['p50'], "
        "future := 'SELECT ts, promo FROM shop_days', "
        f"history := 'SELECT ts, value FROM shop_days WHERE ts < TIMESTAMP ''{LATER}''') ORDER BY ts",
    )
    actual = FRAME["value"].iloc[TRAINED_DAYS + 30 : TRAINED_DAYS + 35].to_numpy()
    assert mae([r[0] for r in typed], actual) < 2.0


def test_the_old_call_forms_still_work(con: duckdb.DuckDBPyConnection) -> None:
    assert len(_values(con, "SELECT * FROM ml.forecast('duck_plain', horizon := 4)")) == 12
    assert len(_values(con, "SELECT * FROM ml.duck_plain(horizon := 2, quantiles := ['mean'])")) == 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("ml.forecast('duck_promo', horizon := 3)", r"trained with covariates \(promo\).*3 steps missing"),
        (
            "ml.forecast('duck_promo', horizon := 3, future := 'SELECT ts, promo FROM shop_days WHERE false')",
            r"trained with covariates \(promo\)",
        ),
        (
            "ml.forecast('duck_promo', horizon := 30, "
            "future := 'SELECT ts, promo FROM shop_days WHERE ts < TIMESTAMP ''2023-12-01''')",
            r"missing for 27 of the 30 forecast steps: column\(s\) promo at 2023-12-01",
        ),
        (
            "ml.forecast('duck_plain', horizon := 3, future := 'SELECT ts, promo FROM shop_days')",
            'model "duck_plain" has no covariates',
        ),
        (
            "ml.forecast('duck_plain', horizon := 3, "
            "history := 'SELECT ts, value FROM shop_days ORDER BY ts LIMIT 40')",
            r'too little history: series "shop" has 40 daily observations; model "duck_plain" needs at least \d+',
        ),
        (
            "ml.forecast('duck_plain', horizon := 3, history := "
            "'SELECT ts, value FROM shop_days "
            "WHERE ts NOT BETWEEN TIMESTAMP ''2023-04-12'' AND TIMESTAMP ''2023-04-21''')",
            r"gaps: 10 missing days .*first 2023-04-12",
        ),
    ],
)
def test_bad_future_and_history_say_why(con: duckdb.DuckDBPyConnection, call: str, message: str) -> None:
    with pytest.raises(duckdb.Error) as caught:
        con.sql(f"SELECT * FROM {call}").fetchall()
    assert re.search(message, str(caught.value)), str(caught.value)
    assert "InvalidInput" in str(caught.value)
