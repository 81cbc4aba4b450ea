"""Forecast covariates and fresh history, through the real trainer and a real `ModelHost`.

The series is driven by a covariate (value = base + weekly cycle + 5 * promo + noise,
tests/forecast_series.py): the model trained with it, given the future promo days, beats the one
trained without it; a model trained up to day D forecasts from the data up to D+30 given as
history, starting the day after; every missing or misplaced input is an `InvalidInput` that names
what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sqlml.bridge.host import ModelHost
from sqlml.bridge.registry import Registry
from sqlml.bridge.runtimes.forecast import META_FILE, ForecastMeta
from sqlml.errors import InvalidInput
from tests.forecast_series import TRAINED_DAYS, mae, promo_frame, train_promo_models

HORIZON = 30


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return promo_frame()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame) -> ModelHost:
    registry = Registry(tmp_path_factory.mktemp("covariates") / "models")
    train_promo_models(registry, frame, "sales")
    return ModelHost(registry)


def arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def test_the_covariate_is_recorded_in_the_manifest_and_the_artifact(host: ModelHost) -> None:
    manifest = host.registry.describe("sales_promo")
    assert manifest.params["covariates"] == [{"name": "promo", "type": "boolean"}]
    assert manifest.params["features"][-1] == "promo"
    meta = ForecastMeta.from_json(
        Path(host.registry.local_path("sales_promo", manifest.version), META_FILE).read_text()
    )
    assert meta.covariates == [{"name": "promo", "type": "boolean"}]
    assert host.registry.describe("sales_plain").params["covariates"] == []


def test_future_covariate_values_lower_the_error_of_a_covariate_driven_series(
    host: ModelHost, frame: pd.DataFrame
) -> None:
    future = frame.iloc[TRAINED_DAYS : TRAINED_DAYS + HORIZON]
    actual = future["value"].to_numpy()
    informed = host.forecast("sales_promo", None, HORIZON, ["p50"], arrow(future[["ts", "promo"]]))
    blind = host.forecast("sales_plain", None, HORIZON, ["p50"])
    assert informed["ts"].to_pylist() == blind["ts"].to_pylist() == list(future["ts"])
    with_promo, without = mae(informed["value"].to_numpy(), actual), mae(blind["value"].to_numpy(), actual)
    assert with_promo < 0.6 * without, (with_promo, without)


def test_future_rows_may_carry_the_series_and_extra_columns(host: ModelHost, frame: pd.DataFrame) -> None:
    future = frame.iloc[TRAINED_DAYS : TRAINED_DAYS + 3].assign(note="x")
    by_series = host.forecast("sales_promo", ["shop"], 3, ["p50"], arrow(future[["ts", "series", "promo", "note"]]))
    shared = host.forecast("sales_promo", ["shop"], 3, ["p50"], arrow(future[["ts", "promo"]]))
    assert by_series["value"].to_pylist() == shared["value"].to_pylist()


def test_history_thirty_days_past_the_training_end_starts_the_forecast_after_it(
    host: ModelHost, frame: pd.DataFrame
) -> None:
    later = TRAINED_DAYS + 30
    history = arrow(frame.iloc[:later][["ts", "value"]])
    table = host.forecast("sales_plain", None, 7, ["p50"], None, history)
    expected = pd.date_range(frame["ts"].iloc[later - 1], periods=8, freq="D")[1:]
    assert list(pd.DatetimeIndex(table["ts"].to_pylist())) == list(expected)
    stored = host.forecast("sales_plain", None, 7, ["p50"])
    assert pd.Timestamp(stored["ts"][0].as_py()) == frame["ts"].iloc[TRAINED_DAYS]  # the stored history ends at D
    # with the covariate: history and future together, the future read at the new steps
    future = arrow(frame.iloc[later : later + 7][["ts", "promo"]])
    informed = host.forecast("sales_promo", None, 7, ["p50"], future, history)
    actual = frame["value"].iloc[later : later + 7].to_numpy()
    assert list(pd.DatetimeIndex(informed["ts"].to_pylist())) == list(expected)
    assert mae(informed["value"].to_numpy(), actual) < 2.0


def test_history_only_needs_the_last_steps_the_features_read(host: ModelHost, frame: pd.DataFrame) -> None:
    recent = frame.iloc[-170:][["ts", "value"]]  # 170 days, the features read the last 146
    table = host.forecast("sales_plain", None, 2, ["p10", "p90"], None, arrow(recent))
    assert pd.Timestamp(table["ts"][0].as_py()) == frame["ts"].iloc[-1] + pd.Timedelta(days=1)
    low, high = table["value"].to_pylist()[0::2], table["value"].to_pylist()[1::2]
    assert all(lo <= hi for lo, hi in zip(low, high, strict=True))


def test_missing_future_values_name_the_columns_and_the_steps(host: ModelHost, frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput, match=r"trained with covariates \(promo\).*30 steps missing: 2023-11-28"):
        host.forecast("sales_promo", None, HORIZON, ["p50"])
    partial = frame.iloc[TRAINED_DAYS : TRAINED_DAYS + 10][["ts", "promo"]]
    with pytest.raises(InvalidInput, match=r"missing for 20 of the 30 forecast steps: column\(s\) promo at 2023-12-08"):
        host.forecast("sales_promo", None, HORIZON, ["p50"], arrow(partial))
    nulls = frame.iloc[TRAINED_DAYS : TRAINED_DAYS + 3][["ts"]].assign(promo=pd.array([True, None, False]))
    with pytest.raises(InvalidInput, match=r"missing for 1 of the 3 forecast steps: column\(s\) promo at 2023-11-29"):
        host.forecast("sales_promo", None, 3, ["p50"], arrow(nulls))
    with pytest.raises(InvalidInput, match=r"future rows lack the covariate column\(s\) promo"):
        host.forecast("sales_promo", None, 3, ["p50"], arrow(frame.iloc[:3][["ts", "value"]]))


def test_future_values_for_a_model_without_covariates_are_refused(host: ModelHost, frame: pd.DataFrame) -> None:
    future = arrow(frame.iloc[TRAINED_DAYS : TRAINED_DAYS + 3][["ts", "promo"]])
    with pytest.raises(InvalidInput, match='model "sales_plain" has no covariates'):
        host.forecast("sales_plain", None, 3, ["p50"], future)


def test_too_little_or_gapped_history_names_the_counts_and_the_gap(host: ModelHost, frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput, match=r'series "shop" has 40 daily observations; .* needs at least \d+') as short:
        host.forecast("sales_plain", None, 3, ["p50"], None, arrow(frame.iloc[:40][["ts", "value"]]))
    assert short.value.detail["observations"] == 40 and short.value.detail["needed"] > 40
    gapped = frame.iloc[np.r_[0:100, 110:300]][["ts", "value"]]
    with pytest.raises(InvalidInput, match=r"gaps: 10 missing days .* first 2023-04-12"):
        host.forecast("sales_plain", None, 3, ["p50"], None, arrow(gapped))
    with pytest.raises(InvalidInput, match='history holds series "shap", which model "sales_plain" does not know'):
        host.forecast("sales_plain", None, 3, ["p50"], None, arrow(frame.iloc[:200].assign(series="shap")))
    with pytest.raises(InvalidInput, match="history rows need a ts column"):
        host.forecast("sales_plain", None, 3, ["p50"], None, pa.table({"day": [1], "value": [1.0]}))
