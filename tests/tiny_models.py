"""Tiny real models shared by test folders: built from configs in seconds, never downloaded."""

from __future__ import annotations

from pathlib import Path


def random_bert(
    folder: Path,
    *,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 2,
    intermediate: int = 64,
    max_positions: int = 512,
    classifier: bool = True,
) -> Path:
    """A random BERT saved into `folder` with the packaged MiniLM tokenizer: a two-class classifier
    labelled as the sentiment trainer's, or (`classifier=False`) a bare encoder to fine-tune."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    from sqlml.bridge.training.sentiment import ID2LABEL, packaged_encoder

    tokenizer = AutoTokenizer.from_pretrained(str(packaged_encoder()), local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_positions,
    )
    if classifier:
        config.num_labels = 2
        config.id2label, config.label2id = ID2LABEL, {v: k for k, v in ID2LABEL.items()}
        BertForSequenceClassification(config).save_pretrained(folder)
    else:
        BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
