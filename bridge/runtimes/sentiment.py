"""The sentiment runtime: a fine-tuned transformers sequence classifier behind `ml.sentiment(text)`.

Artifact: the version folder holds a `save_pretrained` model (two classes, index 1 = "great", a
5-star review) and its tokenizer; `manifest.params` holds the decision thresholds and `max_length`.

The label rule, with p = P(great) from the model's softmax and thresholds from the manifest
(`negative_below` <= `positive_above`, picked by the trainer on held-out reviews):

    p >= positive_above   -> "positive",  confidence = p
    p <= negative_below   -> "negative",  confidence = 1 - p
    otherwise             -> "neutral",   confidence = 1 - |2p - 1|  (1.0 when the model is undecided)

So confidence is the probability of the side the label stands for, always in [0, 1]. Text that is
empty or only whitespace gets NULL label and NULL confidence (there is nothing to judge). Long text
is cut to `MAX_CHARS` characters before tokenizing (so a 10 MB string costs no more than a page)
and then truncated to `max_length` tokens (default 256).

`params.device` is `auto` (the first CUDA GPU PyTorch sees, else the CPU), `cpu`, `cuda` or
`cuda:N`. `params.precision` picks the arithmetic of the forward pass: `float32` (the default, what the
trainer measured) or `bfloat16` (PyTorch autocast: matrix products in bfloat16, normalisation and
softmax still in float32). On a CPU with native bfloat16 (AVX512-BF16 or AMX) a batch of 64 short
reviews scores about 1.8 to 2.1 times faster; probabilities move by about 1e-3, so a review sitting on a
threshold can change label. The linear layers' weights are cast to bfloat16 once at load
(`store_linear_weights_in_bfloat16`), so those weights take half the memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from sqlml.bridge.runtimes.base import Runtime

MAX_CHARS = 20_000
DEFAULT_MAX_LENGTH = 256
DEFAULT_SUB_BATCH = 64
DEFAULT_THRESHOLDS = {"negative_below": 0.35, "positive_above": 0.65}
PRECISIONS = ("float32", "bfloat16")
LABELS = ("positive", "negative", "neutral")


def precision_param(params: dict[str, Any], key: str) -> str:
    """`params[key]` (default `float32`) checked against PRECISIONS; the runtime and the job
    trainer (`serve_precision`) read it the same way."""
    value = str(params.get(key, "float32"))
    if value not in PRECISIONS:
        raise ValueError(f"params.{key} must be one of {', '.join(PRECISIONS)}, not {value!r}")
    return value


def pick_device(wanted: str) -> str:
    """The torch device for `params.device`: `auto` is the first GPU when PyTorch sees one, else
    the CPU; `cpu`, `cuda` and `cuda:N` are taken as asked, and a GPU that is not there is an error."""
    import torch

    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cpu":
        return wanted
    if not re.fullmatch(r"cuda(:\d+)?", wanted):
        raise ValueError(f"params.device must be auto, cpu, cuda or cuda:N, not {wanted!r}")
    index = int(wanted.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():  # 0 GPUs when PyTorch sees no CUDA at all
        seen = f"{torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() else "no CUDA GPU here"
        raise ValueError(f"params.device is {wanted!r} but PyTorch sees {seen}")
    return wanted


def label_for(p_great: float, negative_below: float, positive_above: float) -> tuple[str, float]:
    """The label and confidence for one probability (the rule in the module docstring)."""
    if p_great >= positive_above:
        return "positive", p_great
    if p_great <= negative_below:
        return "negative", 1.0 - p_great
    return "neutral", 1.0 - abs(2.0 * p_great - 1.0)


def labels_for(
    probabilities: np.ndarray, negative_below: float, positive_above: float
) -> tuple[list[str], list[float]]:
    """`label_for` over a whole vector."""
    labels, confidences = [], []
    for p in probabilities.tolist():
        label, confidence = label_for(float(p), negative_below, positive_above)
        labels.append(label)
        confidences.append(confidence)
    return labels, confidences


def score_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    sub_batch: int = DEFAULT_SUB_BATCH,
    precision: str = "float32",
) -> np.ndarray:
    """P(great) per text, in the order given. Shared by the runtime and the trainer's evaluation.

    Texts are tokenized once, sorted by token count and run in sub-batches padded only to their
    own longest row, so one long review does not make 63 short ones pay for its padding.
    """
    import torch

    if not texts:
        return np.zeros(0, dtype=np.float64)
    cut = [text[:MAX_CHARS] for text in texts]
    encoded = tokenizer(cut, truncation=True, max_length=max_length, padding=False)
    ids: list[list[int]] = encoded["input_ids"]
    order = np.argsort([len(row) for row in ids], kind="stable")
    out = np.empty(len(texts), dtype=np.float64)
    pad_id = tokenizer.pad_token_id or 0
    device = next(model.parameters()).device  # the tensors follow the model, CPU or GPU
    bfloat16 = precision == "bfloat16"
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bfloat16):
        for start in range(0, len(order), sub_batch):
            chunk = order[start : start + sub_batch]
            input_ids, attention = pad_batch([ids[i] for i in chunk], pad_id)
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
            out[chunk] = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
    return out


def store_linear_weights_in_bfloat16(model: Any) -> None:
    """Cast the linear layers' weights to bfloat16 once, at load. Autocast would otherwise cast
    every weight again on every call (it caches casts only inside one autocast block), a fixed cost
    that made one text slower in bfloat16 than in float32. The arithmetic is what autocast does;
    embeddings and layer norms stay float32, and those weights take half the memory."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """Right-pad token id rows to the longest one: (input_ids, attention_mask) tensors."""
    import torch

    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention[i, : len(row)] = 1
    return input_ids, attention


class SentimentRuntime(Runtime):
    name = "sentiment"

    model: Any = None
    tokenizer: Any = None
    device: str = "cpu"
    precision: str = "float32"

    def load(self) -> None:
        self.precision = precision_param(self.manifest.params, "precision")
        self.device = pick_device(str(self.manifest.params.get("device", "auto")))
        # Never reach for the hub: the artifact folder is all there is.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(str(self.path), local_files_only=True)
        self.model.to(self.device).eval()
        if self.precision == "bfloat16":
            store_linear_weights_in_bfloat16(self.model)
        thresholds = {**DEFAULT_THRESHOLDS, **self.manifest.params.get("thresholds", {})}
        self.negative_below = float(thresholds["negative_below"])
        self.positive_above = float(thresholds["positive_above"])
        self.max_length = int(self.manifest.params.get("max_length", DEFAULT_MAX_LENGTH))
        self.sub_batch = int(self.manifest.params.get("sub_batch", DEFAULT_SUB_BATCH))

    def predict(self, batch: pa.Table) -> pa.Table:
        texts: list[str | None] = batch.column("text").to_pylist()
        present = [i for i, text in enumerate(texts) if text is not None and text[:MAX_CHARS].strip()]
        labels: list[str | None] = [None] * len(texts)
        confidences: list[float | None] = [None] * len(texts)
        if present:
            probabilities = score_texts(
                self.model,
                self.tokenizer,
                [texts[i] or "" for i in present],
                max_length=self.max_length,
                sub_batch=self.sub_batch,
                precision=self.precision,
            )
            decided = labels_for(probabilities, self.negative_below, self.positive_above)
            for position, label, confidence in zip(present, *decided, strict=True):
                labels[position] = label
                confidences[position] = confidence
        return pa.table({"label": pa.array(labels, pa.string()), "confidence": pa.array(confidences, pa.float64())})

    def unload(self) -> None:
        self.model = None
        self.tokenizer = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()  # hand the evicted weights' GPU memory back

    def memory_bytes(self) -> int:
        if self.model is None:
            return super().memory_bytes()
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return int(sum(t.numel() * t.element_size() for t in tensors))
