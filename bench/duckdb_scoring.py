"""Benchmark: DuckDB scoring through sqlml (embedded) vs the raw model, side by side in one run.

    python bench/duckdb_scoring.py [--store PATH] [--rows 1000000] [--texts 2000]

1. XGBoost `inplace_predict` on a 1,000,000 x 85 float32 matrix, raw, vs
   `SELECT ml.lead_score(<85 columns>) FROM leads_1m` on a DuckDB table holding the same values.
2. The sentiment transformer's batched forward on 2,000 review texts, raw (the runtime's own
   tokenize + sorted sub-batch forward, called directly), vs `SELECT ml.sentiment(body) FROM reviews_2k`.

Models come from `--store` (default: the sqlml store); a missing `lead_score` or `sentiment` is
trained first (sentiment on a small sample: same architecture, so the same forward cost).
Budget (DESIGN.md): embedded >= 0.8x raw throughput. Prints rows/s and, last, the ratios.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from sqlml import config
from sqlml.bridge.client import LocalClient
from sqlml.bridge.registry import Registry
from sqlml.udfs import register


def best_of(repeats: int, run: Callable[[], Any]) -> float:
    """The fastest of `repeats` timed runs, in seconds (the first run also warms caches)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def ensure_models(registry: Registry, leads: bool = True, sentiment: bool = True) -> None:
    names = set(registry.names())
    if leads and "lead_score" not in names:
        from sqlml.bridge.training.leads import train_leads

        print("training lead_score (not in the store) ...")
        train_leads(registry, alias="production", progress=False)
    if sentiment and "sentiment" not in names:
        from sqlml.bridge.training.sentiment import train_sentiment

        print("training a small sentiment model (not in the store) ...")
        train_sentiment(registry, alias="production", progress=False, limit=200, epochs=1)


def bench_leads(client: LocalClient, rows: int, repeats: int) -> tuple[float, float]:
    model = client.host.get("lead_score")
    runtime: Any = model.runtime
    features = model.manifest.signature.input_names()
    rng = np.random.default_rng(0)
    values = rng.integers(0, 10, size=(rows, len(features)), dtype=np.int64)
    matrix = np.ascontiguousarray(values, dtype=np.float32)

    booster = runtime.booster.copy()
    booster.set_param({"nthread": 0})  # raw XGBoost at its default: every core in one call
    raw = best_of(repeats, lambda: booster.inplace_predict(matrix, validate_features=False))

    con = duckdb.connect()
    register(con, client)
    con.register("leads_arrow", pa.table({name: values[:, i] for i, name in enumerate(features)}))
    con.execute("CREATE TABLE leads_1m AS SELECT * FROM leads_arrow")
    con.unregister("leads_arrow")
    query = f"SELECT ml.lead_score({', '.join(features)}) AS p FROM leads_1m"
    scores: list[Any] = []
    embedded = best_of(repeats, lambda: scores.append(con.sql(query).to_arrow_table()))
    got = np.asarray(scores[-1].column("p").to_numpy(), dtype=np.float32)
    expected = booster.inplace_predict(matrix, validate_features=False)
    assert np.allclose(np.sort(got), np.sort(expected), atol=1e-6), "ml.lead_score disagrees with the raw model"
    con.close()
    return rows / raw, rows / embedded


def bench_sentiment(client: LocalClient, count: int, repeats: int) -> tuple[float, float]:
    from sqlml.bridge.runtimes.sentiment import score_texts
    from sqlml.data.reviews import load_reviews

    model = client.host.get("sentiment")
    runtime: Any = model.runtime
    bodies = load_reviews()["body"].tolist()
    texts = [bodies[i % len(bodies)] for i in range(count)]

    def raw_forward() -> None:
        score_texts(
            runtime.model,
            runtime.tokenizer,
            texts,
            max_length=runtime.max_length,
            sub_batch=runtime.sub_batch,
            precision=runtime.precision,
        )

    raw = best_of(repeats, raw_forward)
    con = duckdb.connect()
    register(con, client)
    con.register("texts_arrow", pa.table({"body": texts}))
    con.execute("CREATE TABLE reviews_2k AS SELECT * FROM texts_arrow")
    con.unregister("texts_arrow")
    embedded = best_of(repeats, lambda: con.execute("SELECT ml.sentiment(body) FROM reviews_2k").fetchall())
    con.close()
    return count / raw, count / embedded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="model store (default: the sqlml store)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--texts", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-sentiment", action="store_true")
    parser.add_argument("--skip-leads", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    registry = Registry(args.store or config.store_url())
    ensure_models(registry, leads=not args.skip_leads, sentiment=not args.skip_sentiment)
    client = LocalClient(registry)
    print(f"store: {registry.url}; duckdb {duckdb.__version__}; threads: {os.cpu_count()}")

    ratios = []
    if not args.skip_leads:
        raw_leads, sql_leads = bench_leads(client, args.rows, args.repeats)
        print(f"lead_score  raw inplace_predict      {raw_leads:>12,.0f} rows/s  ({args.rows:,} rows)", flush=True)
        print(f"lead_score  SELECT ml.lead_score(..) {sql_leads:>12,.0f} rows/s", flush=True)
        ratios.append(("lead_score embedded/raw", sql_leads / raw_leads))
    if not args.skip_sentiment:
        raw_text, sql_text = bench_sentiment(client, args.texts, max(1, args.repeats - 1))
        print(f"sentiment   raw batched forward      {raw_text:>12,.1f} rows/s  ({args.texts:,} texts)", flush=True)
        print(f"sentiment   SELECT ml.sentiment(body) {sql_text:>11,.1f} rows/s", flush=True)
        ratios.append(("sentiment embedded/raw", sql_text / raw_text))
    print(" ".join(f"{name} = {ratio:.2f}x" for name, ratio in ratios) + " (budget >= 0.8x)")


if __name__ == "__main__":
    main()
