"""Training only the top layers on cached states must be the full model's forward, exactly."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from sqlml.bridge.runtimes.sentiment import pad_batch
from sqlml.bridge.training.top_layers import frozen_states, top_logits, trainable_parameters


def test_cached_states_give_the_full_forward(tiny_base: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_base), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_base), num_labels=2).eval()
    texts = ["great coffee", "stale, bitter and overpriced; never again", "ok", "the best tea I ever had, truly"]
    ids = tokenizer(texts, truncation=True, max_length=32)["input_ids"]
    layers = model.config.num_hidden_layers
    with torch.inference_mode():
        input_ids, attention = pad_batch(ids, tokenizer.pad_token_id or 0)
        full = model(input_ids=input_ids, attention_mask=attention).logits
        for trainable in range(1, layers + 1):
            states = frozen_states(model, ids, layers - trainable, tokenizer.pad_token_id or 0, batch_size=3)
            assert torch.allclose(top_logits(model, states, trainable), full, atol=1e-5)


def test_only_the_top_layers_and_the_head_train(tiny_base: Path) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_base), num_labels=2)
    chosen = {id(p) for p in trainable_parameters(model, 1)}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert chosen == trainable
    assert not any(p.requires_grad for p in model.base_model.embeddings.parameters())
    assert not any(p.requires_grad for p in model.base_model.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
