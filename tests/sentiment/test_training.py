"""`train_sentiment` on a tiny random BERT and a few reviews: the real trainer, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqlml.bridge.manifest import Manifest
from sqlml.bridge.registry import ModelRef, Registry
from sqlml.bridge.training.sentiment import packaged_encoder, train_sentiment
from sqlml.errors import TrainingError


def test_manifest_records_metrics_lineage_and_calibration(trained: Manifest) -> None:
    assert trained.name == "sentiment" and trained.runtime == "sentiment" and trained.task == "sentiment"
    assert 0.0 <= trained.metrics["auc"] <= 1.0
    assert 0.0 <= trained.metrics["accuracy"] <= 1.0
    assert trained.metrics["train_seconds"] > 0
    assert trained.lineage["train_rows"] + trained.lineage["validation_rows"] == 80
    assert trained.lineage["test_rows"] == 80
    assert len(trained.lineage["data_fingerprint"]) == 64
    assert set(trained.params["calibration"]) == {"encoder_weight", "lexical_weight", "bias"}
    assert set(trained.params["segment_calibration"]) == {"encoder_weight", "lexical_weight", "bias"}
    assert trained.params["segment_calibration"]["lexical_weight"] == 0.0
    assert trained.params["labels"]["neutral_gamma"] > 0
    for key in ("encoder_auc", "lexical_auc", "ece_before", "ece_after", "neutral_rate"):
        assert 0.0 <= trained.metrics[key] <= 1.0
    assert trained.signature.input_names() == ["text"]
    assert trained.signature.output_names() == [
        "label",
        "confidence",
        "score_positive",
        "score_negative",
        "score_neutral",
        "score_mixed",
    ]


def test_published_under_the_production_alias(registry: Registry, trained: Manifest) -> None:
    assert registry.aliases("sentiment")["production"] == trained.version
    stored = registry.describe(ModelRef("sentiment", "production"))
    assert stored.metrics == trained.metrics
    folder = registry.local_path("sentiment", trained.version)
    assert (folder / "config.json").exists() and (folder / "tokenizer.json").exists()
    assert (folder / "lexical.json").exists()


def test_training_without_alias_does_not_move_production(
    registry: Registry, tiny_base: Path, trained: Manifest
) -> None:
    candidate = train_sentiment(registry, base_model=tiny_base, limit=40, epochs=1, alias=None, progress=True)
    assert candidate.version > trained.version
    assert registry.aliases("sentiment")["production"] == trained.version


def test_a_missing_base_model_fails_cleanly(registry: Registry, tmp_path: Path) -> None:
    before = registry.versions("sentiment")
    with pytest.raises(TrainingError, match="base model"):
        train_sentiment(registry, base_model=tmp_path / "nothing", limit=20, progress=False)
    assert registry.versions("sentiment") == before


def test_packaged_encoder_is_found_without_the_hub() -> None:
    folder = packaged_encoder()
    assert (folder / "config.json").exists() and (folder / "vocab.txt").exists()


def test_the_full_encoder_stage_trains_and_publishes_the_same_shape(registry: Registry, tiny_base: Path) -> None:
    manifest = train_sentiment(
        registry, base_model=tiny_base, encoder="full", limit=40, epochs=1, max_length=32, alias=None, progress=False
    )
    assert manifest.lineage["training"]["encoder"] == "full"
    assert set(manifest.params["calibration"]) == {"encoder_weight", "lexical_weight", "bias"}
    assert (registry.local_path("sentiment", manifest.version) / "lexical.json").exists()


def test_an_unknown_encoder_stage_is_refused(registry: Registry, tiny_base: Path) -> None:
    with pytest.raises(TrainingError, match="encoder must be one of top_layers, full"):
        train_sentiment(registry, base_model=tiny_base, encoder="huge", limit=20, progress=False)
