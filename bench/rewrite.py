"""Benchmark: per-row model calls vs the rewriter's batched form on PostgreSQL, 100,000 rows.

Needs a database with the sqlml extension pointed at a running bridge serving `sentiment` and a
typed `lead_score` (after `SELECT ml.sync()`). Runs both queries of each pair in one session,
side by side, and prints the ratio last (budget: >= 20x).

    python bench/rewrite.py --dsn "host=127.0.0.1 user=postgres dbname=sqlml" [--rows 100000] [--sentiment-rows N]

A CPU-only bridge runs a real transformer at tens of texts a second, so `--sentiment-rows` lets the
sentiment pair use fewer rows than the lead-scoring pair (the output says how many).
"""

from __future__ import annotations

import argparse
import time

import psycopg

from sqlml.sql.catalog import Catalog
from sqlml.sql.rewrite import rewrite

SETUP = """
CREATE TEMP TABLE bench_reviews AS
SELECT g AS id, 'review number ' || g || CASE WHEN g %% 2 = 0 THEN ' was great' ELSE ' was bad' END AS body
FROM generate_series(1, %(rows)s) AS g;
"""


def timed(connection: psycopg.Connection, sql: str) -> tuple[float, int]:
    start = time.perf_counter()
    rows = connection.execute(f"SELECT count(*) FROM ({sql}) AS bench").fetchone()
    return time.perf_counter() - start, int(rows[0]) if rows else 0


def lead_query(catalog: Catalog, rows: int) -> str | None:
    function = catalog.lookup("lead_score")
    if function is None:
        return None
    arguments = ", ".join(f"(g * {i + 7}) % 10" for i in range(len(function.inputs)))
    return f"SELECT g AS id, ml.lead_score({arguments}) FROM generate_series(1, {rows}) AS g"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--sentiment-rows", type=int, default=None, help="rows for the transformer query (default: --rows)"
    )
    args = parser.parse_args()
    with psycopg.connect(args.dsn, autocommit=True) as connection:
        catalog = Catalog.from_connection(connection)
        connection.execute(SETUP, {"rows": args.rows})
        sentiment_rows = args.sentiment_rows or args.rows
        pairs = {"sentiment": f"SELECT id, ml.sentiment(body) FROM bench_reviews WHERE id <= {sentiment_rows}"}
        expected = {"sentiment": min(sentiment_rows, args.rows), "lead_score": args.rows}
        lead = lead_query(catalog, args.rows)
        if lead is not None:
            pairs["lead_score"] = lead
        ratios = []
        for name, original in pairs.items():
            result = rewrite(original, catalog)
            assert result.changed, result.reason
            timed(connection, result.sql)  # warm-up: load the model and the session helper
            batched, n = timed(connection, result.sql)
            per_row, m = timed(connection, original)
            assert n == m == expected[name]
            ratio = per_row / batched
            ratios.append(ratio)
            print(f"{name:>10}: per-row {per_row:8.2f} s  batched {batched:6.2f} s  ({n} rows)  ratio {ratio:6.1f}x")
        print(f"rewrite speed-up (min over queries): {min(ratios):.1f}x (budget >= 20x)")


if __name__ == "__main__":
    main()
