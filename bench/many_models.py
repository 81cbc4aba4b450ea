"""1,000 small XGBoost models behind one bridge under a memory budget below their total size.

Requests follow a skewed (Zipf-like) popularity, as in multi-model hosting: a few models are hot,
most are cold. Reports cold-load latency (first request to a model that is not in memory, seen by
the client) p50/p99, the cache hit ratio from the bridge's metrics, and peak RSS vs the budget.
Run: .venv/bin/python bench/many_models.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import Bridge, percentile_ms, publish_booster, train_booster

from sqlml.bridge.host import ModelHost
from sqlml.bridge.http_client import NO_DELAY
from sqlml.bridge.manifest import Batching
from sqlml.bridge.registry import Registry

MODELS, FEATURES, TREES, DISTINCT = 1000, 8, 20, 16
REQUESTS = 2500
BUDGET_SHARE = 0.25  # the budget holds a quarter of all models


def main() -> None:
    store = tempfile.mkdtemp(prefix="sqlml-bench-many-")
    registry = Registry(store)
    boosters = [train_booster(FEATURES, TREES, seed=s, depth=3) for s in range(DISTINCT)]
    started = time.perf_counter()
    for i in range(MODELS):
        publish_booster(registry, f"m{i:04d}", boosters[i % DISTINCT], FEATURES, Batching(max_wait_ms=0))
    print(f"published {MODELS} models in {time.perf_counter() - started:.1f} s")
    # the host budgets with each runtime's own estimate (booster plus per-model overhead)
    model_bytes = ModelHost(registry).get("m0000").nbytes
    total = model_bytes * MODELS
    budget = int(total * BUDGET_SHARE)
    rng = np.random.default_rng(0)
    ranks = rng.zipf(1.3, size=REQUESTS * 3)
    sequence = [int(r - 1) for r in ranks if r <= MODELS][:REQUESTS]
    row = {"rows": [{f"f{i}": 0.5 for i in range(FEATURES)}]}
    seen: set[int] = set()
    first: list[float] = []
    later: list[float] = []
    with Bridge(store, "--memory-budget", str(budget), env={"OMP_NUM_THREADS": "1"}) as bridge:
        rss_start = bridge.rss_bytes()
        transport = httpx.HTTPTransport(socket_options=NO_DELAY)
        with httpx.Client(base_url=bridge.url, timeout=30, transport=transport) as http:
            run_started = time.perf_counter()
            for index in sequence:
                t0 = time.perf_counter()
                http.post(f"/v1/models/m{index:04d}/predict", json=row).raise_for_status()
                (later if index in seen else first).append(time.perf_counter() - t0)
                seen.add(index)
            elapsed = time.perf_counter() - run_started
        metrics = bridge.metrics()
        peak = bridge.rss_bytes("VmHWM")
    hits = metrics.get("sqlml_model_cache_hits_total", 0.0)
    misses = metrics.get("sqlml_model_cache_misses_total", 0.0)
    loads = metrics.get("sqlml_model_load_seconds_count", 0.0)
    mib = 2**20
    rate = len(sequence) / elapsed
    print(f"{len(sequence)} requests to {len(seen)} distinct models in {elapsed:.1f} s ({rate:.0f} req/s)")
    print(
        f"model size (the host's estimate) ~{model_bytes / 1024:.0f} KiB, "
        f"all models {total / mib:.1f} MiB, budget {budget / mib:.1f} MiB"
    )
    unloads = metrics.get("sqlml_model_unload_seconds_count", 0)
    loaded_mib = metrics.get("sqlml_loaded_model_bytes", 0) / mib
    print(
        f"loads {loads:.0f}, unloads {unloads:.0f}, loaded at end "
        f"{metrics.get('sqlml_loaded_models', 0):.0f}, loaded bytes {loaded_mib:.1f} MiB"
    )
    print(f"warm request p50 {percentile_ms(later, 50):.2f} ms p99 {percentile_ms(later, 99):.2f} ms")
    print(
        f"RESULT {MODELS} models, budget {BUDGET_SHARE:.0%} of their total: "
        f"cold-load p50 {percentile_ms(first, 50):.1f} ms "
        f"p99 {percentile_ms(first, 99):.1f} ms; hit ratio {hits / max(hits + misses, 1):.3f}; peak RSS "
        f"{peak / 2**20:.0f} MiB (at start {rss_start / 2**20:.0f} MiB, growth {(peak - rss_start) / 2**20:.0f} MiB) "
        f"vs budget {budget / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    main()
