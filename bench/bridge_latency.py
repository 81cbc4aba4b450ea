"""Bridge single-row XGBoost predict latency on localhost: p50/p99 at 1 and 32 concurrent clients.

Each client is a kept-alive HTTP connection sending one-row JSON requests (what a per-row call
from PostgreSQL sends). Anchor: SageMaker multi-model endpoints report p90 of about 7 ms.
Run: .venv/bin/python bench/bridge_latency.py
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import Bridge, percentile_ms, publish_booster, train_booster

from sqlml.bridge.http_client import NO_DELAY
from sqlml.bridge.manifest import Batching
from sqlml.bridge.registry import Registry

FEATURES, TREES = 20, 100
SECONDS_PER_LEVEL = 8.0


def run_clients(url: str, clients: int, seconds: float) -> list[float]:
    rng = np.random.default_rng(0)
    rows = [{f"f{i}": float(v) for i, v in enumerate(rng.normal(size=FEATURES))} for _ in range(64)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.perf_counter() + seconds

    def client(index: int) -> None:
        transport = httpx.HTTPTransport(socket_options=NO_DELAY)
        with httpx.Client(base_url=url, timeout=10, transport=transport) as http:
            http.post("/v1/models/lead/predict", json={"rows": rows[:1]}).raise_for_status()  # warm connection
            n = 0
            while time.perf_counter() < stop:
                started = time.perf_counter()
                response = http.post("/v1/models/lead/predict", json={"rows": [rows[n % 64]]})
                latencies[index].append(time.perf_counter() - started)
                response.raise_for_status()
                n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [x for per_client in latencies for x in per_client]


def main() -> None:
    store = tempfile.mkdtemp(prefix="sqlml-bench-latency-")
    registry = Registry(store)
    # max_wait_ms=0: the batcher never waits for company, it only coalesces what is already queued
    publish_booster(registry, "lead", train_booster(FEATURES, TREES, seed=1), FEATURES, Batching(max_wait_ms=0))
    results = {}
    # one OpenMP thread: for one-row predicts XGBoost's thread pool only adds barrier waits, which on a
    # busy machine cost tens of milliseconds (measured: p50 ~100 ms with the default, ~20 ms with 1)
    with Bridge(store, env={"OMP_NUM_THREADS": "1"}) as bridge:
        for clients in (1, 32):
            latencies = run_clients(bridge.url, clients, SECONDS_PER_LEVEL)
            results[clients] = latencies
            print(
                f"{clients:>2} clients: {len(latencies) / SECONDS_PER_LEVEL:8.0f} req/s  "
                f"p50 {percentile_ms(latencies, 50):6.2f} ms  p90 {percentile_ms(latencies, 90):6.2f} ms  "
                f"p99 {percentile_ms(latencies, 99):6.2f} ms"
            )
    one, many = results[1], results[32]
    print(
        f"RESULT single-row XGBoost ({FEATURES} features, {TREES} trees) over HTTP JSON: "
        f"1 client p50 {percentile_ms(one, 50):.2f} ms / p99 {percentile_ms(one, 99):.2f} ms; "
        f"32 clients p50 {percentile_ms(many, 50):.2f} ms / p99 {percentile_ms(many, 99):.2f} ms "
        f"(SageMaker MME anchor p90 7 ms)"
    )


if __name__ == "__main__":
    main()
