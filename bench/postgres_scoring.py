"""Benchmark: scoring 100,000 leads in PostgreSQL through sqlml, per row vs batched vs raw.

Side by side in one run, on the same 100,000 rows (the 5,822 Caravan customers repeated) and the
same XGBoost model (85 features, trained here on Caravan and published to a temporary store
behind a real bridge process):

- per row: the typed function `ml.lead_score(85 columns)`, one HTTP request per row;
- batched: `ml.predict_batch(model, jsonb[])` and `ml.predict_query(model, query, key)`;
- raw: `Booster.inplace_predict` on the same rows already in a NumPy array, in this process.

Budget (DESIGN.md): batched >= 20x faster than per row; the ratio to raw is reported. Ratios last.
Run: .venv/bin/python bench/postgres_scoring.py [--rows 100000] [--per-row-rows N]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import psycopg
import xgboost as xgb

from sqlml.bridge.manifest import Column, Manifest, Signature
from sqlml.bridge.registry import Registry
from sqlml.data.leads import TARGET_COLUMN, lead_features, load_leads

ROOT = Path(__file__).resolve().parents[1]
PG_DSN = os.environ.get("SQLML_BENCH_PG", "host=127.0.0.1 port=5432 user=postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train_and_publish(store: Path, work: Path) -> tuple[xgb.Booster, list[str], np.ndarray]:
    frame = load_leads()
    features = lead_features(frame)
    x = frame[features].to_numpy(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "eta": 0.1, "nthread": 1},
                        xgb.DMatrix(x, label=frame[TARGET_COLUMN].to_numpy()), 100)  # fmt: skip
    (work / "artifact").mkdir()
    booster.save_model(str(work / "artifact" / "model.json"))
    manifest = Manifest(
        name="lead_score", runtime="xgboost", task="classification",
        signature=Signature(inputs=[Column(name=f, type="bigint") for f in features],
                            outputs=[Column(name="probability", type="double")]),
    )  # fmt: skip
    Registry(store).publish(manifest, work / "artifact", alias="production")
    return booster, features, frame[features].to_numpy(np.int64)


def start_bridge(store: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [str(Path(sys.executable).parent / "sqlml"), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--store", str(store), "--no-auth"]  # fmt: skip
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("bridge not ready")


def timed(label: str, run: Callable[[], object], results: dict[str, float]) -> None:
    started = time.perf_counter()
    value = run()
    results[label] = time.perf_counter() - started
    print(f"  {label:<34} {results[label]:8.2f} s   ({value})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--per-row-rows", type=int, default=None,
                        help="time the per-row path on this many rows and scale up (default: all rows)")  # fmt: skip
    args = parser.parse_args()
    subprocess.run(["make", "-C", str(ROOT / "extension"), "install"], check=True, capture_output=True)
    with tempfile.TemporaryDirectory(prefix="sqlml-bench-") as tmp:
        work = Path(tmp)
        booster, features, caravan = train_and_publish(work / "models", work)
        matrix = np.resize(caravan, (args.rows, len(features)))  # Caravan repeated to the row count
        bridge, url = start_bridge(work / "models", work / "bridge.log")
        database = f"sqlml_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        try:
            results = run_paths(f"{PG_DSN} dbname={database}", url, booster, features, matrix, args)
        finally:
            with psycopg.connect(PG_DSN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            bridge.terminate()
            bridge.wait(timeout=10)
    report(results, args.rows)


def run_paths(dsn: str, url: str, booster: xgb.Booster, features: list[str], matrix: np.ndarray,
              args: argparse.Namespace) -> dict[str, float]:  # fmt: skip
    rows = len(matrix)
    results: dict[str, float] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION sqlml CASCADE")
        conn.execute(f"SET sqlml.bridge_url = '{url}'")
        conn.execute("SET sqlml.timeout_ms = 60000")
        conn.execute("SET sqlml.batch_size = 10000")
        conn.execute("SELECT * FROM ml.sync()")
        columns = ", ".join(f"{f} bigint" for f in features)
        conn.execute(f"CREATE TABLE leads (id bigint PRIMARY KEY, {columns})")
        buffer = io.StringIO()
        np.savetxt(buffer, np.column_stack([np.arange(1, rows + 1), matrix]), fmt="%d", delimiter="\t")
        with conn.cursor().copy("COPY leads FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        conn.execute("ANALYZE leads")
        # warm up: the bridge loads the model, the session loads the helper module
        conn.execute("SELECT ml.lead_score(" + ", ".join(features) + ") FROM leads LIMIT 10").fetchall()
        print(f"scoring {rows:,} leads (85 features) — PostgreSQL 15 + sqlml bridge at {url}", flush=True)

        per_row_rows = args.per_row_rows or rows
        per_row_sql = f"SELECT sum(ml.lead_score({', '.join(features)})) FROM leads WHERE id <= {per_row_rows}"
        timed(f"per row ({per_row_rows:,} rows)", lambda: conn.execute(per_row_sql).fetchone()[0], results)
        results["per row"] = results.pop(f"per row ({per_row_rows:,} rows)") * rows / per_row_rows
        batch_sql = ("SELECT count(*), sum((result->>'probability')::float8) FROM ml.predict_batch('lead_score', "
                     "ARRAY(SELECT to_jsonb(l) - 'id' FROM leads l ORDER BY id))")  # fmt: skip
        timed("ml.predict_batch", lambda: conn.execute(batch_sql).fetchone(), results)
        query_sql = ("SELECT count(*), sum((result->>'probability')::float8) FROM ml.predict_query('lead_score', "
                     "'SELECT * FROM leads', 'id')")  # fmt: skip
        timed("ml.predict_query", lambda: conn.execute(query_sql).fetchone(), results)
    as_float = matrix.astype(np.float32)
    timed("raw inplace_predict (in process)", lambda: float(booster.inplace_predict(as_float).sum()), results)
    return results


def report(results: dict[str, float], rows: int) -> None:
    print()
    print(f"{'path':<34} {'seconds':>8} {'rows/s':>12}")
    for label, seconds in results.items():
        print(f"{label:<34} {seconds:8.2f} {rows / seconds:12,.0f}")
    best = min(results["ml.predict_batch"], results["ml.predict_query"])
    print()
    print(f"ml.predict_batch vs per row: {results['per row'] / results['ml.predict_batch']:.1f}x faster")
    print(f"ml.predict_query vs per row: {results['per row'] / results['ml.predict_query']:.1f}x faster")
    print(
        f"best batched path vs raw in-process model: {best / results['raw inplace_predict (in process)']:.1f}x slower"
    )
    print(f"RATIO batched/per-row speedup: {results['per row'] / best:.1f}x (budget >= 20x)")


if __name__ == "__main__":
    main()
