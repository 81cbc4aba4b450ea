"""The text classifier runtime: any transformers sequence classifier, with the labels it was saved with.

Artifact: a `save_pretrained` folder (config, safetensors weights, tokenizer), as
`sqlml models import` copies it. `manifest.params.labels` lists the labels in the model's class
order (its `config.id2label`); `multi_label` is true for a model trained with
`problem_type="multi_label_classification"` (each label's score a sigmoid instead of a softmax
over all labels); `max_length` (default 256) and `sub_batch` (default 64) bound the tokens per
text and the texts per forward pass; `device` is `auto`, `cpu`, `cuda` or `cuda:N` as for the
sentiment runtime.

Outputs follow the signature's order, whatever their names: the label with the highest score, its
score (`confidence`), then one score column per label (when the importer could name them). Text
that is NULL, empty or only whitespace gets NULL outputs; long text is cut to `MAX_CHARS`
characters before tokenizing, then truncated to `max_length` tokens, as `ml.sentiment` does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from sqlml.bridge.runtimes.base import Runtime
from sqlml.bridge.runtimes.sentiment import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_SUB_BATCH,
    MAX_CHARS,
    pad_batch,
    pick_device,
)
from sqlml.errors import ModelLoadError


def label_scores(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    sub_batch: int = DEFAULT_SUB_BATCH,
    multi_label: bool = False,
) -> np.ndarray:
    """One row of label scores per text, in the order given. Texts run sorted by token count, in
    sub-batches padded to their own longest row."""
    import torch

    if not texts:
        return np.zeros((0, int(model.config.num_labels)), dtype=np.float64)
    encoded = tokenizer([text[:MAX_CHARS] for text in texts], truncation=True, max_length=max_length, padding=False)
    ids: list[list[int]] = encoded["input_ids"]
    order = np.argsort([len(row) for row in ids], kind="stable")
    out = np.empty((len(texts), int(model.config.num_labels)), dtype=np.float64)
    pad_id = tokenizer.pad_token_id or 0
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(order), sub_batch):
            chunk = order[start : start + sub_batch]
            input_ids, attention = pad_batch([ids[i] for i in chunk], pad_id)
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits.float()
            scores = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
            out[chunk] = scores.cpu().numpy()
    return out


class TextClassifierRuntime(Runtime):
    name = "text_classifier"

    model: Any = None
    tokenizer: Any = None
    device: str = "cpu"

    def load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the artifact folder is all there is
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        params = self.manifest.params
        self.labels = [str(label) for label in params.get("labels") or []]
        self.device = pick_device(str(params.get("device", "auto")))
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            str(self.path), local_files_only=True, use_safetensors=True
        )
        self.model.to(self.device).eval()
        if int(self.model.config.num_labels) != len(self.labels):
            raise ModelLoadError(
                f'model "{self.manifest.name}" has {self.model.config.num_labels} labels, '
                f"its manifest {len(self.labels)}"
            )
        self.multi_label = bool(params.get("multi_label", False))
        self.max_length = int(params.get("max_length", DEFAULT_MAX_LENGTH))
        self.sub_batch = int(params.get("sub_batch", DEFAULT_SUB_BATCH))
        self.outputs = self.manifest.signature.output_names()

    def predict(self, batch: pa.Table) -> pa.Table:
        if self.model is None:
            raise ModelLoadError(f'model "{self.manifest.name}" is not loaded')
        texts: list[str | None] = batch.column(0).to_pylist()
        present = [i for i, text in enumerate(texts) if text is not None and text[:MAX_CHARS].strip()]
        scores = np.full((len(texts), len(self.labels)), np.nan)
        if present:
            scores[present] = label_scores(
                self.model,
                self.tokenizer,
                [texts[i] or "" for i in present],
                max_length=self.max_length,
                sub_batch=self.sub_batch,
                multi_label=self.multi_label,
            )
        missing = np.ones(len(texts), dtype=bool)
        missing[present] = False
        chosen = np.where(missing, 0, np.nan_to_num(scores).argmax(axis=1)) if len(texts) else np.zeros(0, int)
        labels = np.asarray(self.labels, dtype=object)[chosen]
        columns: dict[str, pa.Array] = {
            self.outputs[0]: pa.array(labels, pa.string(), mask=missing),
            self.outputs[1]: pa.array(scores[np.arange(len(texts)), chosen], pa.float64(), mask=missing),
        }
        for position, name in enumerate(self.outputs[2:]):
            columns[name] = pa.array(scores[:, position], pa.float64(), mask=missing)
        return pa.table(columns)

    def unload(self) -> None:
        self.model = None
        self.tokenizer = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def memory_bytes(self) -> int:
        if self.model is None:
            return super().memory_bytes()
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return int(sum(t.numel() * t.element_size() for t in tensors))
