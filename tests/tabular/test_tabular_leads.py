"""Lead scoring end to end: the trainer's artifact served by the XGBoost runtime through ModelHost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import xgboost as xgb

from sqlml.bridge.host import ModelHost
from sqlml.bridge.manifest import Manifest
from sqlml.bridge.registry import Registry
from sqlml.bridge.runtimes.xgboost_model import MODEL_FILE, MULTITHREAD_ROWS
from sqlml.errors import InvalidInput
from tests.tabular.conftest import LEAD_FEATURES


def _batch(frame: pd.DataFrame, rows: int = 50) -> pa.Table:
    return pa.Table.from_pandas(frame[LEAD_FEATURES].head(rows), preserve_index=False)


def _raw_booster(registry: Registry, manifest: Manifest) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(str(registry.local_path(manifest.name, manifest.version) / MODEL_FILE))
    return booster


def test_manifest_records_metrics_and_lineage(lead_manifest: Manifest, lead_frame: pd.DataFrame) -> None:
    assert lead_manifest.runtime == "xgboost" and lead_manifest.task == "classification"
    assert lead_manifest.signature.input_names() == LEAD_FEATURES
    assert [c.type for c in lead_manifest.signature.inputs] == ["bigint"] * len(LEAD_FEATURES)
    assert lead_manifest.signature.output_names() == ["probability"]
    assert 0.5 < lead_manifest.metrics["auc"] <= 1.0
    assert lead_manifest.metrics["logloss"] > 0
    assert 0.0 <= lead_manifest.metrics["auc_cv"] <= 1.0
    assert lead_manifest.metrics["base_rate"] == pytest.approx(lead_frame["purchased"].mean())
    assert lead_manifest.lineage["rows"] == len(lead_frame)
    assert len(lead_manifest.lineage["fingerprint"]) == 64


def test_probabilities_match_raw_inplace_predict(
    host: ModelHost, registry: Registry, lead_manifest: Manifest, lead_frame: pd.DataFrame
) -> None:
    out = host.predict("lead_score", _batch(lead_frame, 200))
    raw = _raw_booster(registry, lead_manifest).inplace_predict(
        lead_frame[LEAD_FEATURES].head(200).to_numpy(np.float32)
    )
    assert out.schema == pa.schema([pa.field("probability", pa.float64())])
    np.testing.assert_allclose(out.column("probability").to_numpy(), raw, rtol=1e-6)


def test_multi_chunk_batches_score_the_same(host: ModelHost, lead_frame: pd.DataFrame) -> None:
    whole = _batch(lead_frame, 100)
    chunked = pa.concat_tables([whole.slice(0, 30), whole.slice(30, 70)])
    assert chunked.column(0).num_chunks == 2
    assert host.predict("lead_score", chunked).equals(host.predict("lead_score", whole))


def test_shap_contributions_plus_bias_equal_margin_for_every_row(
    host: ModelHost, registry: Registry, lead_manifest: Manifest, lead_frame: pd.DataFrame
) -> None:
    explained = host.explain("lead_score", _batch(lead_frame, 120), top_k=len(LEAD_FEATURES))
    assert explained.column_names == ["contributions", "bias", "margin"]
    margins = _raw_booster(registry, lead_manifest).inplace_predict(
        lead_frame[LEAD_FEATURES].head(120).to_numpy(np.float32), predict_type="margin"
    )
    for row, (contributions, bias, margin) in enumerate(
        zip(*(explained.column(c).to_pylist() for c in explained.column_names), strict=True)
    ):
        assert sorted(c["feature"] for c in contributions) == sorted(LEAD_FEATURES)
        total = sum(c["contribution"] for c in contributions) + bias
        assert total == pytest.approx(margin, abs=1e-5)
        assert margin == pytest.approx(float(margins[row]), abs=1e-5)


def test_explain_top_k_is_sorted_by_absolute_contribution(host: ModelHost, lead_frame: pd.DataFrame) -> None:
    batch = _batch(lead_frame, 20)
    explained = host.explain("lead_score", batch, top_k=3).column("contributions").to_pylist()
    for row, contributions in enumerate(explained):
        assert len(contributions) == 3
        sizes = [abs(c["contribution"]) for c in contributions]
        assert sizes == sorted(sizes, reverse=True)
        for item in contributions:  # the value is the row's own feature value
            assert item["value"] == float(batch.column(item["feature"])[row].as_py())


def test_explain_empty_and_all_null_batches(host: ModelHost, lead_frame: pd.DataFrame) -> None:
    empty = host.explain("lead_score", _batch(lead_frame, 0), top_k=2)
    assert empty.num_rows == 0 and empty.column_names == ["contributions", "bias", "margin"]
    nulls = pa.table({name: pa.nulls(2, pa.int64()) for name in LEAD_FEATURES})
    explained = host.explain("lead_score", nulls, top_k=2)  # every feature missing: still explained
    assert explained.num_rows == 2 and explained.column("bias").null_count == 0
    values = [c["value"] for row in explained.column("contributions").to_pylist() for c in row]
    assert values and all(v is None for v in values)


def test_explain_rejects_a_non_positive_top_k(host: ModelHost, lead_frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput, match="top_k"):
        host.explain("lead_score", _batch(lead_frame, 3), top_k=0)


def test_a_null_feature_is_a_missing_value_and_still_scored(host: ModelHost, lead_frame: pd.DataFrame) -> None:
    """XGBoost learned where missing values go: a lead with an unknown field gets a score, the
    same one as with NaN in the raw booster, and the other rows are unchanged."""
    import xgboost as xgb

    batch = _batch(lead_frame, 4)
    holes = batch.set_column(1, LEAD_FEATURES[1], pa.array([None, 1, 2, None], pa.int64()))
    out = host.predict("lead_score", holes).column("probability").to_pylist()
    assert all(p is not None and 0.0 < p < 1.0 for p in out)
    full = host.predict("lead_score", holes.filter(pa.array([False, True, True, False])))
    assert out[1:3] == full.column("probability").to_pylist()
    model = host.get("lead_score")
    raw = np.asarray(holes.to_pandas(), dtype=np.float32)
    booster = xgb.Booster()
    booster.load_model(str(model.runtime.path / "model.json"))
    assert out == pytest.approx(booster.inplace_predict(raw).tolist(), rel=1e-6)


def test_wrong_type_names_the_column(host: ModelHost, lead_frame: pd.DataFrame) -> None:
    batch = _batch(lead_frame, 3).set_column(2, LEAD_FEATURES[2], pa.array(["a", "b", "c"]))
    with pytest.raises(InvalidInput, match=LEAD_FEATURES[2]):
        host.predict("lead_score", batch)


def test_missing_column_names_the_column(host: ModelHost, lead_frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput, match="ppersaut"):
        host.predict("lead_score", _batch(lead_frame, 3).drop_columns(["ppersaut"]))


def test_extra_column_names_the_column_and_suggests(host: ModelHost, lead_frame: pd.DataFrame) -> None:
    batch = _batch(lead_frame, 3).append_column("mostypee", pa.array([1, 2, 3], pa.int64()))
    with pytest.raises(InvalidInput, match="mostypee") as caught:
        host.predict("lead_score", batch)
    assert "mostype" in (caught.value.hint or "")


def test_doubles_are_accepted_and_cast(host: ModelHost, lead_frame: pd.DataFrame) -> None:
    ints = _batch(lead_frame, 5)
    doubles = pa.table({name: ints.column(name).cast(pa.float64()) for name in LEAD_FEATURES})
    assert host.predict("lead_score", doubles).equals(host.predict("lead_score", ints))


def test_memory_estimate_grows_with_the_booster_and_counts_overhead(
    host: ModelHost, registry: Registry, lead_manifest: Manifest
) -> None:
    serialized = len(_raw_booster(registry, lead_manifest).save_raw("ubj"))
    model = host.get("lead_score")
    assert model.nbytes == 4 * serialized + 384 * 1024


def _big(frame: pd.DataFrame, rows: int = 40_000) -> pd.DataFrame:
    """At least `MULTITHREAD_ROWS` rows, so the runtime scores them in slices side by side."""
    repeats = -(-rows // len(frame))
    return pd.concat([frame[LEAD_FEATURES]] * repeats, ignore_index=True).head(rows)


def test_a_large_batch_scored_in_slices_matches_raw_in_order(
    host: ModelHost, registry: Registry, lead_manifest: Manifest, lead_frame: pd.DataFrame
) -> None:
    big = _big(lead_frame)
    assert len(big) >= MULTITHREAD_ROWS
    out = host.predict("lead_score", pa.Table.from_pandas(big, preserve_index=False))
    raw = _raw_booster(registry, lead_manifest).inplace_predict(big.to_numpy(np.float32))
    np.testing.assert_allclose(out.column("probability").to_numpy(), raw, rtol=1e-6)
    explained = host.explain("lead_score", pa.Table.from_pandas(big, preserve_index=False), top_k=2)
    margins = _raw_booster(registry, lead_manifest).inplace_predict(big.to_numpy(np.float32), predict_type="margin")
    np.testing.assert_allclose(explained.column("margin").to_numpy(), margins, atol=1e-5)
    head = host.explain("lead_score", _batch(lead_frame, 30), top_k=2)
    assert explained.slice(0, 30).equals(head)


def test_concurrent_calls_from_threads_give_the_sequential_results(host: ModelHost, lead_frame: pd.DataFrame) -> None:
    batches = [_batch(lead_frame.iloc[i * 500 :], 500) for i in range(6)]
    batches.append(pa.Table.from_pandas(_big(lead_frame, 20_000), preserve_index=False))
    expected = [host.predict("lead_score", b) for b in batches]
    with ThreadPoolExecutor(max_workers=len(batches)) as pool:
        for _ in range(3):
            assert list(pool.map(lambda b: host.predict("lead_score", b), batches)) == expected
