"""Fine-tuning of the sentiment transformer: one function for the demo's trainer, Ray Train and `torchrun`.

The full fine-tune (`encoder="full"` in sqlml.bridge.training.sentiment; jobs use it): every layer but
the word embeddings trains, batches are length-sorted and padded only to their own longest row
(`max_length` 128 by default), AdamW with linear warmup and decay, and, where the hardware has
native bfloat16 (a CUDA GPU, or a CPU with AVX512-BF16 / AMX), the forward pass runs under bfloat16
autocast (`bf16`, default on): about 35 % less CPU time a step on these machines.

`train_loop(config)` runs on every rank. Under Ray's `TorchTrainer` the process group already
exists (gloo on CPU, nccl on GPUs); under `torchrun` it is created here from the environment
torchrun sets (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`); alone it trains on one process.
Every rank walks the same shuffled list of length-sorted batches and takes every world-size-th
one, the same count on each rank so the gradient all-reduces stay in step. Rank 0 then scores the
validation and test texts, saves the model and tokenizer into `output_dir`, and returns the
probabilities and the measured samples/s; other ranks return an empty dict.

This module needs only PyTorch, transformers and numpy, so it runs on a GPU machine with none of
sqlml's other dependencies (see bench/gpu_check.sh):

    torchrun --nproc_per_node=2 -m sqlml.bridge.jobs.ddp_sentiment --data reviews.csv \\
        --base-model path/to/all-MiniLM-L6-v2 --epochs 1 --output /tmp/sentiment
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ID2LABEL = {0: "other", 1: "great"}
TRUE_TEXT = frozenset({"1", "true", "t", "yes", "y", "great"})


def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """ROC AUC by ranks (ties averaged); NaN when only one class is present."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_scores = s[order]
    start = 0
    while start < len(s):
        end = start
        while end + 1 < len(s) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return float((ranks[y].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune on every rank; rank 0 scores, saves and returns the results (see module docstring)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    use_gpu = bool(config.get("use_gpu")) and torch.cuda.is_available()
    owns_group = False
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if use_gpu else "gloo")  # torchrun: we create the group
        owns_group = True
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    device = torch.device(
        config.get("device") or (f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if use_gpu else "cpu")
    )
    if device.type == "cuda":
        torch.cuda.set_device(device)

    seed = int(config.get("seed", 0))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # same seed on every rank: identical initial heads before DDP syncs them

    base = str(config["base_model"])
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()}, local_files_only=True
    )
    if config.get("freeze_embeddings", True):
        # the word embeddings are a third of MiniLM's weights and barely move in a few epochs
        for parameter in model.base_model.embeddings.word_embeddings.parameters():
            parameter.requires_grad = False
    model.float().to(device)  # an encoder exported in fp16 (bench/gpu_check.sh) still trains in fp32
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    max_length = int(config.get("max_length", 128))
    batch_size = int(config.get("batch_size", 16))
    epochs = int(config.get("epochs", 1))
    ids: list[list[int]] = tokenizer(
        list(config["train_texts"]), truncation=True, max_length=max_length, padding=False
    )["input_ids"]
    labels = torch.tensor(np.asarray(config["train_labels"], dtype=np.int64))
    batches = _length_sorted_batches(ids, batch_size)
    per_rank = max(1, len(batches) // world)
    steps = epochs * per_rank
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=float(config.get("learning_rate", 5e-5)), weight_decay=float(config.get("weight_decay", 0.01))
    )
    bf16 = bool(config.get("bf16", True)) and native_bfloat16(device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_linear(steps, 0.06))
    pad_id = tokenizer.pad_token_id or 0
    on_step: Callable[[int, int], None] | None = config.get("on_step")

    model.train()
    losses: list[float] = []
    samples = 0
    started = time.perf_counter()
    for epoch in range(epochs):
        order = list(range(len(batches)))
        random.Random(seed + epoch).shuffle(order)  # same order on every rank
        mine = [batches[order[(rank + i * world) % len(order)]] for i in range(per_rank)]
        for step, batch in enumerate(mine):
            input_ids, attention = _pad([ids[i] for i in batch], pad_id, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(input_ids=input_ids, attention_mask=attention).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), labels[batch].to(device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            samples += len(batch)
            if on_step is not None and rank == 0:
                on_step(epoch * per_rank + step + 1, steps)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    counted = torch.tensor([float(samples)], device=device)
    if distributed:
        dist.all_reduce(counted)

    result: dict[str, Any] = {}
    if rank == 0:
        inner = model.module if distributed else model
        inner.eval()
        score_length = int(config.get("score_max_length", max_length * 2))  # the length it will be served with
        p_validation = score(inner, tokenizer, config.get("validation_texts") or [], device, score_length)
        p_test = score(inner, tokenizer, config.get("test_texts") or [], device, score_length)
        output_dir = config.get("output_dir")
        if output_dir:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            inner.save_pretrained(output_dir)
            tokenizer.save_pretrained(output_dir)
        tail = losses[-max(1, len(losses) // 4) :]
        result = {
            "validation_p": p_validation,
            "test_p": p_test,
            "samples_per_second": float(counted.item()) / max(seconds, 1e-9),
            "train_seconds": seconds,
            "final_train_loss": float(np.mean(tail)) if tail else float("nan"),
            "world_size": world,
            "device": str(device),
            "bf16": bf16,
        }
        if config.get("test_labels") is not None:
            result["test_auc"] = auc(p_test, config["test_labels"])
    if distributed:
        dist.barrier()
    if owns_group:
        dist.destroy_process_group()
    return result


def native_bfloat16(device: Any) -> bool:
    """Whether `device` computes in bfloat16 natively (emulated bfloat16 on a CPU is slower than float32)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def score(
    model: Any, tokenizer: Any, texts: Sequence[str], device: Any, max_length: int, batch: int = 64
) -> list[float]:
    """P(class 1) for each text, in input order (length-sorted batches, no gradients)."""
    import torch

    if not texts:
        return []
    ids: list[list[int]] = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)["input_ids"]
    out = np.empty(len(ids), dtype=np.float64)
    with torch.no_grad():
        for chunk in _length_sorted_batches(ids, batch):
            input_ids, attention = _pad([ids[i] for i in chunk], tokenizer.pad_token_id or 0, device)
            logits = model(input_ids=input_ids, attention_mask=attention).logits
            out[chunk] = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
    return out.tolist()


def _pad(rows: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention[i, : len(row)] = 1
    return input_ids.to(device), attention.to(device)


def _length_sorted_batches(ids: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _warmup_linear(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


# -- torchrun entry point ----------------------------------------------------------------------


def read_rows(path: Path, text_column: str, label_column: str, split_column: str) -> dict[str, list[Any]]:
    """Texts, 0/1 labels and splits from a CSV (standard library) or a parquet file (pyarrow)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        rows = table.to_pylist()
    else:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    return {
        "text": [str(r[text_column]) for r in rows],
        "label": [int(str(r[label_column]).strip().lower() in TRUE_TEXT) for r in rows],
        "split": [str(r.get(split_column, "train")) for r in rows],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="DDP fine-tuning of the sentiment classifier (torchrun or alone)")
    parser.add_argument("--data", type=Path, required=True, help="CSV or parquet with text, label and split columns")
    parser.add_argument("--base-model", required=True, help="folder of a transformers encoder (e.g. all-MiniLM-L6-v2)")
    parser.add_argument("--text-column", default="body")
    parser.add_argument("--label-column", default="great")
    parser.add_argument("--split-column", default="split", help="rows whose value is 'test' are held out")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--limit", type=int, default=None, help="use at most this many training rows")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    parser.add_argument("--output", default=None, help="where rank 0 saves the fine-tuned model")
    args = parser.parse_args(argv)

    rows = read_rows(args.data, args.text_column, args.label_column, args.split_column)
    train = [i for i, s in enumerate(rows["split"]) if s != "test"][: args.limit]
    test = [i for i, s in enumerate(rows["split"]) if s == "test"]
    result = train_loop(
        {
            "base_model": args.base_model,
            "train_texts": [rows["text"][i] for i in train],
            "train_labels": [rows["label"][i] for i in train],
            "test_texts": [rows["text"][i] for i in test],
            "test_labels": [rows["label"][i] for i in test],
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "learning_rate": args.learning_rate,
            "use_gpu": not args.cpu,
            "output_dir": args.output,
        }
    )
    if result:
        summary = {k: v for k, v in result.items() if k not in ("validation_p", "test_p")}
        summary["train_rows"], summary["test_rows"] = len(train), len(test)
        print(json.dumps(summary), flush=True)
        print(f"samples/s {result['samples_per_second']:.1f}  test AUC {result.get('test_auc', float('nan')):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
