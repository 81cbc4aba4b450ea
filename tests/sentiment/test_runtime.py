"""The sentiment runtime, alone and behind the model host / embedded client."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from sqlml.bridge.client import LocalClient
from sqlml.bridge.host import ModelHost
from sqlml.bridge.manifest import Manifest
from sqlml.bridge.registry import Registry
from sqlml.bridge.runtimes import runtime_class
from sqlml.bridge.runtimes.sentiment import LABELS, SCORE_COLUMNS, SentimentRuntime, score_texts
from sqlml.errors import ModelLoadError

from .conftest import sentiment_manifest

TEXTS = [
    "Absolutely delicious, best coffee I have ever had",
    "Your product stinks and I'll never buy from you again!",
    "ok",
    "The dog food arrived on time. My dogs ate it, then ignored it for a week. " * 20,
    "Tea",
]


@pytest.fixture(scope="module")
def runtime(registry: Registry, fixed_calibration: Manifest) -> SentimentRuntime:
    name, version = fixed_calibration.name, fixed_calibration.version
    loaded = SentimentRuntime(fixed_calibration, registry.local_path(name, version))
    loaded.load()
    return loaded


def predict(runtime: SentimentRuntime, texts: list[str | None]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = runtime.predict(pa.table({"text": pa.array(texts, pa.string())})).to_pylist()
    return out


def test_runtime_is_registered_under_its_manifest_name() -> None:
    assert runtime_class("sentiment") is SentimentRuntime


def test_labels_and_confidences_are_in_range(runtime: SentimentRuntime) -> None:
    rows = predict(runtime, list(TEXTS))
    assert len(rows) == len(TEXTS)
    for row in rows:
        assert row["label"] in LABELS
        assert isinstance(row["confidence"], float) and 0.0 <= row["confidence"] <= 1.0


def test_the_four_scores_sum_to_one_and_the_label_is_the_largest(runtime: SentimentRuntime) -> None:
    texts = [*TEXTS, "Delicious tea. The box was crushed and half the bags were torn!", "Lovely; awful"]
    rows = predict(runtime, texts)
    for row in rows:
        scores = {label: row[f"score_{label}"] for label in LABELS}
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-9)
        assert all(0.0 <= v <= 1.0 for v in scores.values())
        assert row["label"] == max(scores, key=scores.__getitem__)
        assert row["confidence"] == pytest.approx(scores[row["label"]])
    assert rows[0]["score_mixed"] == 0.0  # one sentence is never mixed


def test_segments_off_means_one_pass_and_never_mixed(registry: Registry, fixed_calibration: Manifest) -> None:
    loaded = _fixed_with(registry, fixed_calibration, labels={"segments": False})
    loaded.load()
    rows = predict(loaded, ["Delicious tea. The box was crushed!", "Lovely; awful"])
    assert [row["score_mixed"] for row in rows] == [0.0, 0.0]


def test_a_version_with_the_old_two_outputs_gets_just_those(registry: Registry, tiny_base: Path) -> None:
    old = sentiment_manifest("sentiment_two_outputs", {"thresholds": {"negative_below": 0.3, "positive_above": 0.7}})
    signature = old.signature.model_copy(update={"outputs": old.signature.outputs[:2]})
    published = registry.publish(old.model_copy(update={"signature": signature}), tiny_base)
    out = ModelHost(registry).predict("sentiment_two_outputs", pa.table({"text": ["lovely", None]}))
    assert out.schema.names == ["label", "confidence"] and published.version >= 1
    assert out.column("label").to_pylist()[0] in LABELS


def test_order_is_preserved_whatever_the_lengths(runtime: SentimentRuntime) -> None:
    forward = predict(runtime, list(TEXTS))
    backward = predict(runtime, list(reversed(TEXTS)))
    one_by_one = [predict(runtime, [text])[0] for text in TEXTS]
    assert backward == list(reversed(forward))
    for alone, batched in zip(one_by_one, forward, strict=True):
        assert alone["label"] == batched["label"]
        assert alone["confidence"] == pytest.approx(batched["confidence"], abs=1e-5)


def test_padding_and_sub_batches_do_not_change_scores(runtime: SentimentRuntime) -> None:
    texts = [text * (i + 1) for i, text in enumerate(TEXTS)]
    small = score_texts(runtime.model, runtime.tokenizer, texts, sub_batch=2)
    large = score_texts(runtime.model, runtime.tokenizer, texts, sub_batch=64)
    assert small == pytest.approx(large, abs=1e-5)


def test_empty_whitespace_and_null_text_give_null(runtime: SentimentRuntime) -> None:
    rows = predict(runtime, ["", "   \n\t ", None, "great snack"])
    assert rows[:3] == [dict.fromkeys(["label", "confidence", *SCORE_COLUMNS])] * 3
    assert rows[3]["label"] in LABELS


def test_ten_megabyte_text_is_truncated_and_fast(runtime: SentimentRuntime) -> None:
    huge = "This tea is wonderful and I would buy it again. " * 220_000  # ~10.6 MB
    assert len(huge) > 10_000_000
    started = time.perf_counter()
    rows = predict(runtime, [huge, "short"])
    assert time.perf_counter() - started < 5.0
    assert rows[0]["label"] in LABELS and rows[1]["label"] in LABELS


def test_memory_estimate_counts_parameters(runtime: SentimentRuntime) -> None:
    n_parameters = sum(p.numel() for p in runtime.model.parameters())
    assert runtime.memory_bytes() >= 4 * n_parameters


def test_host_puts_nulls_back_in_place(registry: Registry, fixed_calibration: Manifest) -> None:
    host = ModelHost(registry)
    batch = pa.table({"text": pa.array(["lovely", None, "", "awful", None], pa.string())})
    out = host.predict("sentiment_fixed", batch)
    assert out.schema.names == ["label", "confidence", *SCORE_COLUMNS]
    assert out.schema.field("confidence").type == pa.float64()
    labels = out.column("label").to_pylist()
    assert [label is None for label in labels] == [False, True, True, False, True]
    assert host.loaded() == [("sentiment_fixed", fixed_calibration.version)]


def test_local_client_serves_the_trained_model(registry: Registry, trained: Manifest) -> None:
    client = LocalClient(registry)
    out = client.predict("sentiment", pa.table({"text": TEXTS})).to_pylist()
    assert [row["label"] in LABELS for row in out] == [True] * len(TEXTS)
    listing = {row["name"]: row for row in client.models()}
    assert listing["sentiment"]["task"] == "sentiment"
    assert listing["sentiment"]["loaded"] is True
    assert set(listing["sentiment"]["metrics"]) >= {"auc", "accuracy"}


def test_unload_releases_the_model(registry: Registry, tiny_base: Path, fixed_calibration: Manifest) -> None:
    loaded = SentimentRuntime(fixed_calibration, tiny_base)
    loaded.load()
    loaded.unload()
    assert loaded.model is None and loaded.tokenizer is None


def _fixed_with(registry: Registry, fixed: Manifest, **params: object) -> SentimentRuntime:
    """The fixed-thresholds model's runtime, not yet loaded, with `params` added to its manifest's."""
    manifest = fixed.model_copy(update={"params": {**fixed.params, **params}})
    return SentimentRuntime(manifest, registry.local_path(fixed.name, fixed.version))


def test_bfloat16_precision_stays_close_to_float32(registry: Registry, fixed_calibration: Manifest) -> None:
    half = _fixed_with(registry, fixed_calibration, precision="bfloat16")
    full = _fixed_with(registry, fixed_calibration)
    half.load()
    full.load()
    texts = [text * (i + 1) for i, text in enumerate(TEXTS)]
    p_half = score_texts(half.model, half.tokenizer, texts, precision=half.precision)
    p_full = score_texts(full.model, full.tokenizer, texts, precision=full.precision)
    assert (half.precision, full.precision) == ("bfloat16", "float32")
    assert p_half == pytest.approx(p_full, abs=2e-2)
    assert list(p_half) != list(p_full)  # bfloat16 really ran: its rounding shows in the last digits
    rows = predict(half, list(TEXTS))
    assert [row["label"] in LABELS for row in rows] == [True] * len(TEXTS)


def test_bfloat16_casts_the_linear_weights_once_at_load(registry: Registry, fixed_calibration: Manifest) -> None:
    half = _fixed_with(registry, fixed_calibration, precision="bfloat16")
    full = _fixed_with(registry, fixed_calibration)
    half.load()
    full.load()
    dtypes = {name: parameter.dtype for name, parameter in half.model.named_parameters()}
    linear = [name for name, module in half.model.named_modules() if isinstance(module, torch.nn.Linear)]
    assert linear and all(dtypes[f"{name}.weight"] == torch.bfloat16 for name in linear)
    assert dtypes["bert.embeddings.word_embeddings.weight"] == torch.float32  # what autocast keeps in float32
    assert half.memory_bytes() < full.memory_bytes()


def test_an_unknown_precision_fails_to_load_with_the_choices(registry: Registry, tiny_base: Path) -> None:
    registry.publish(sentiment_manifest("sentiment_fp8", {"precision": "fp8"}), tiny_base)
    with pytest.raises(ModelLoadError, match=r"params\.precision must be one of float32, bfloat16, not 'fp8'"):
        ModelHost(registry).get("sentiment_fp8")


def test_device_auto_follows_what_torch_sees_and_a_missing_gpu_is_a_clear_load_error(
    registry: Registry, fixed_calibration: Manifest
) -> None:
    import torch

    def with_device(device: str) -> SentimentRuntime:
        return _fixed_with(registry, fixed_calibration, device=device)

    auto = with_device("auto")
    auto.load()
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert auto.device == expected and next(auto.model.parameters()).device.type == expected
    assert predict(auto, ["lovely tea"])[0]["label"] in LABELS
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"params\.device is 'cuda' but PyTorch sees no CUDA GPU here"):
            with_device("cuda").load()
    with pytest.raises(ValueError, match=r"params\.device must be auto, cpu, cuda or cuda:N, not 'tpu'"):
        with_device("tpu").load()


def test_a_model_process_scores_as_the_bridges_own_process_does(
    registry: Registry, fixed_calibration: Manifest
) -> None:
    """`model_processes`: the real runtime in a child process (PyTorch imported there)."""
    batch = pa.table({"text": pa.array([*TEXTS, None, ""], pa.string())})
    here = ModelHost(registry)
    there = ModelHost(registry, model_processes=["sentiment"])
    try:
        expected = here.predict("sentiment_fixed", batch).to_pylist()
        got = there.predict("sentiment_fixed", batch).to_pylist()
        assert [row["label"] for row in got] == [row["label"] for row in expected]
        assert [row["confidence"] for row in got] == pytest.approx([row["confidence"] for row in expected], abs=1e-6)
        in_process = here.get("sentiment_fixed")
        child = there.get("sentiment_fixed")
        assert child.nbytes > in_process.nbytes  # the child's resident memory, PyTorch and all
    finally:
        there.unload("sentiment_fixed")
