"""The sentiment runtime: a fine-tuned transformers classifier behind `ml.sentiment(text)`,
answering in Amazon Comprehend's shape.

Artifact: the version folder holds a `save_pretrained` model (two classes, index 1 = "great", a
5-star review), its tokenizer and, when the trainer fitted one, `lexical.json` (a TF-IDF + logistic
regression model, `sentiment_labels.LexicalModel`). `manifest.params` holds `calibration` (the
stacked logistic regression over the encoder's and the lexical model's logits, fitted on the
trainer's validation slice), `segment_calibration` (the encoder's alone, used for clauses),
`labels.neutral_gamma` and `max_length`.

Outputs, per text: `label` (positive / negative / neutral / mixed), `confidence` (the label's
score) and `score_positive`, `score_negative`, `score_neutral`, `score_mixed`, which sum to 1; how
they are derived is in `sqlml.bridge.runtimes.sentiment_labels`. A text of two or more sentences or
contrast clauses is also scored clause by clause (its first `MAX_SEGMENTS`), for `mixed`
(`params.labels.segments: false` turns that off: one forward pass a text, and `mixed` is always
0). A version whose manifest names only `label` and `confidence` (trained before the four
scores) gets just those columns.

Text that is empty or only whitespace gets NULL everywhere (there is nothing to judge). Long text
is cut to `MAX_CHARS` characters before tokenizing (so a 10 MB string costs no more than a page)
and then truncated to `max_length` tokens (default 256).

`params.device` is `auto` (the first CUDA GPU PyTorch sees, else the CPU), `cpu`, `cuda` or
`cuda:N`. `params.precision` picks the arithmetic of the forward pass: `float32` (the default, what the
trainer measured) or `bfloat16` (PyTorch autocast: matrix products in bfloat16, normalisation and
softmax still in float32). On a CPU with native bfloat16 (AVX512-BF16 or AMX) a batch of 64 short
reviews scores about 1.8 to 2.1 times faster; probabilities move by about 1e-3, so a review sitting on a
boundary can change label. The linear layers' weights are cast to bfloat16 once at load
(`store_linear_weights_in_bfloat16`), so those weights take half the memory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from sqlml.bridge.runtimes.base import Runtime
from sqlml.bridge.runtimes.sentiment_labels import (
    DEFAULT_NEUTRAL_GAMMA,
    LABELS,
    SCORE_COLUMNS,
    Calibration,
    LexicalModel,
    four_scores,
    labels_and_confidences,
    mixed_strength,
    segments,
)

MAX_CHARS = 20_000
DEFAULT_MAX_LENGTH = 256
DEFAULT_SUB_BATCH = 64
PRECISIONS = ("float32", "bfloat16")
LEXICAL_FILE = "lexical.json"
MAX_SEGMENTS = 16  # clauses scored for `mixed`: a long text's first 16 (a forward pass each, batched)
__all__ = ["LABELS", "SCORE_COLUMNS", "SentimentRuntime", "score_texts"]


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
        self.calibration = Calibration.from_params(self.manifest.params.get("calibration"))
        segment_params = self.manifest.params.get("segment_calibration")
        self.segment_calibration = Calibration.from_params(segment_params) if segment_params else None
        lexical_file = self.path / LEXICAL_FILE
        self.lexical = LexicalModel.from_json(json.loads(lexical_file.read_text())) if lexical_file.exists() else None
        labels = self.manifest.params.get("labels", {})
        self.neutral_gamma = float(labels.get("neutral_gamma", DEFAULT_NEUTRAL_GAMMA))
        self.use_segments = bool(labels.get("segments", True))
        self.max_length = int(self.manifest.params.get("max_length", DEFAULT_MAX_LENGTH))
        self.sub_batch = int(self.manifest.params.get("sub_batch", DEFAULT_SUB_BATCH))

    def probabilities(self, texts: Sequence[str], *, segments: bool = False) -> np.ndarray:
        """Calibrated P(positive) per text: encoder, lexical model, stacked calibration. Clauses
        (`segments=True`) use `segment_calibration` when the trainer fitted one: the encoder alone,
        because a TF-IDF model knows too few of a short clause's words to be trusted there."""
        p_encoder = score_texts(
            self.model, self.tokenizer, texts, max_length=self.max_length, sub_batch=self.sub_batch,
            precision=self.precision,
        )  # fmt: skip
        if segments and self.segment_calibration is not None:
            return np.asarray(self.segment_calibration(p_encoder))
        cut = [text[:MAX_CHARS] for text in texts]
        lexical = self.lexical.logits(cut) if self.lexical is not None and texts else None
        return np.asarray(self.calibration(p_encoder, lexical))

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 4) scores in LABELS order (positive, negative, neutral, mixed), rows summing to 1."""
        p = self.probabilities(texts)
        mixed = np.zeros(len(texts))
        if self.use_segments:
            pieces = [segments(text[:MAX_CHARS])[:MAX_SEGMENTS] for text in texts]
            flat = [piece for row in pieces if len(row) > 1 for piece in row]
            q = self.probabilities(flat, segments=True) if flat else np.zeros(0)
            at = 0
            for row, parts in enumerate(pieces):
                if len(parts) > 1:
                    mixed[row] = mixed_strength(q[at : at + len(parts)])
                    at += len(parts)
        return np.asarray(four_scores(p, mixed, self.neutral_gamma))

    def predict(self, batch: pa.Table) -> pa.Table:
        texts: list[str | None] = batch.column("text").to_pylist()
        present = [i for i, text in enumerate(texts) if text is not None and text[:MAX_CHARS].strip()]
        columns: dict[str, list[Any]] = {name: [None] * len(texts) for name in ("label", "confidence", *SCORE_COLUMNS)}
        if present:
            scores = self.scores([texts[i] or "" for i in present])
            labels, confidences = labels_and_confidences(scores)
            for k, position in enumerate(present):
                columns["label"][position] = labels[k]
                columns["confidence"][position] = confidences[k]
                for j, name in enumerate(SCORE_COLUMNS):
                    columns[name][position] = float(scores[k, j])
        wanted = self.manifest.signature.output_names()
        return pa.table(
            {name: pa.array(columns[name], pa.string() if name == "label" else pa.float64()) for name in wanted}
        )

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
