"""Tiny real models shared by test folders: built from configs in seconds, never downloaded."""

from __future__ import annotations

from pathlib import Path


def tiny_bert_classifier(folder: Path) -> Path:
    """A random 2-layer, 32-wide BERT classifier (labels as the sentiment trainer's) saved into
    `folder` with the packaged MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from sqlml.bridge.training.sentiment import ID2LABEL, packaged_encoder

    tokenizer = AutoTokenizer.from_pretrained(str(packaged_encoder()), local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=2,
        id2label=ID2LABEL,
        label2id={v: k for k, v in ID2LABEL.items()},
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
