"""`sqlml demo`: build the demo database, train the three models once, and show SQL that uses them.

First run: loads the data sets into `$SQLML_HOME/demo.duckdb`, trains `sentiment`, `lead_score` and
`household_power` into the store (minutes), then runs the showcase queries. Later runs reuse both
and take seconds. Every query is printed before its result, so the demo teaches the SQL surface.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from sqlml import config
from sqlml.bridge.client import LocalClient
from sqlml.bridge.registry import Registry
from sqlml.demo_data import build_demo_database
from sqlml.plots import forecast_chart
from sqlml.udfs import register

# model -> "module:function" taking (registry, alias=..., progress=...); imported only when needed
TRAINERS: dict[str, str] = {
    "sentiment": "sqlml.bridge.training.sentiment:train_sentiment",
    "lead_score": "sqlml.bridge.training.leads:train_leads",
    "household_power": "sqlml.bridge.training.forecast:train_forecast",
}

SENTIMENT_SQL = """\
-- How do customers feel about each kind of product? Every review in the data is of a different
-- product, so reviews are grouped by keywords (a sample of 200 held-out reviews keeps this quick).
SELECT category,
       count(*) FILTER (WHERE s.label = 'positive') AS positive,
       count(*) FILTER (WHERE s.label = 'neutral')  AS neutral,
       count(*) FILTER (WHERE s.label = 'negative') AS negative,
       count(*) FILTER (WHERE s.label = 'mixed')    AS mixed,
       round(avg(s.confidence), 2)                   AS avg_confidence
FROM (
    SELECT CASE
               WHEN regexp_matches(body, '\\b(coffee|espresso|k-?cups?)\\b', 'i') THEN 'coffee'
               WHEN regexp_matches(body, '\\b(teas?|chai|matcha)\\b', 'i') THEN 'tea'
               WHEN regexp_matches(body, '\\b(dogs?|puppy|cats?|kitten|pets?)\\b', 'i') THEN 'pet food'
               WHEN regexp_matches(body, '\\b(chocolate|candy|cookies?|gum)\\b', 'i') THEN 'sweets'
               WHEN regexp_matches(body, '\\b(chips|crackers|popcorn|snacks?|bars?)\\b', 'i') THEN 'snacks'
               ELSE 'other'
           END AS category,
           ml.sentiment(body) AS s
    FROM reviews
    WHERE split = 'test' AND review_id % 5 = 0
)
GROUP BY category
ORDER BY count(*) DESC"""

LEADS_SQL = """\
-- The ten most promising leads, and the three features that push each score most
WITH best AS (
    SELECT l.*, ml.lead_score(l) AS probability   -- typed macro, struct form: any row with the features
    FROM leads l
    ORDER BY probability DESC
    LIMIT 10
)
SELECT lead_id,
       round(probability, 3) AS probability,
       array_to_string(
           list_transform(ml.explain('lead_score', b, 3),
                          lambda c: printf('%s=%d (%+.2f)', c.feature, c.value::BIGINT, c.contribution)),
           ', ') AS top_reasons
FROM best b
ORDER BY probability DESC"""

FORECAST_SQL = """\
-- The next 48 hours of household power, with an 80 % band
SELECT ts,
       round(max(value) FILTER (WHERE quantile = 'p10'), 3) AS p10,
       round(max(value) FILTER (WHERE quantile = 'p50'), 3) AS p50,
       round(max(value) FILTER (WHERE quantile = 'p90'), 3) AS p90
FROM ml.forecast('household_power', series := 'global_active_power', horizon := 48)
GROUP BY ts
ORDER BY ts"""

HISTORY_SQL = """\
SELECT ts, value FROM power
WHERE series = 'global_active_power'
  AND ts > (SELECT max(ts) FROM power WHERE series = 'global_active_power') - INTERVAL 14 DAY
ORDER BY ts"""


def run_demo(
    console: Console | None = None,
    *,
    registry: Registry | None = None,
    db_path: Path | None = None,
    rebuild: bool = False,
    trainers: dict[str, str] | None = None,
) -> Path:
    """Run the whole demo; returns the path of the forecast chart."""
    console = console or Console()
    registry = registry or Registry(config.store_url())
    db_path = db_path or config.demo_db_path()
    started = time.perf_counter()

    console.rule("[bold]sqlml demo")
    build_demo_database(db_path, rebuild=rebuild, log=lambda line: console.print(f"[dim]{line}"))
    ensure_models(registry, console, trainers if trainers is not None else TRAINERS)

    con = duckdb.connect(str(db_path), read_only=True)
    try:
        register(con, LocalClient(registry))
        console.print(f"[dim]database {db_path}; models from {registry.url}")
        show(console, con, "Sentiment mix by kind of product", SENTIMENT_SQL)
        show(console, con, "Best leads and why", LEADS_SQL)
        forecast = show(console, con, "Power forecast (global_active_power)", FORECAST_SQL)
        history = con.sql(HISTORY_SQL).to_arrow_table()
    finally:
        con.close()
    chart = forecast_chart(
        history.to_pandas(),
        forecast.to_pandas(),
        config.home() / "forecast.png",
        "Household power: last two weeks and the next 48 hours (p10–p90)",
    )
    console.print(f"forecast chart written to [bold]{chart}[/]")
    console.print(f"[dim]demo finished in {time.perf_counter() - started:.1f} s")
    return chart


def ensure_models(registry: Registry, console: Console, trainers: dict[str, str]) -> None:
    """Train (and promote to `production`) each demo model the store lacks."""
    present = set(registry.names())
    for model, target in trainers.items():
        if model in present:
            continue
        console.print(f"[bold]training {model}[/] (first run only) ...")
        trainer = _import(target)
        manifest = trainer(registry, alias="production", progress=True)
        metrics = ", ".join(f"{k}={v:.3f}" for k, v in list(manifest.metrics.items())[:4])
        console.print(f"  {model} version {manifest.version} published ({metrics})")


def _import(target: str) -> Callable[..., Any]:
    module_name, _, attribute = target.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module_name), attribute)
    return function


def show(console: Console, con: duckdb.DuckDBPyConnection, title: str, sql: str) -> pa.Table:
    """Print the SQL, run it, print the rows as a table; returns the rows."""
    show_sql(console, title, sql)
    started = time.perf_counter()
    result = con.sql(sql).to_arrow_table()
    show_rows(console, result, time.perf_counter() - started)
    return result


def show_sql(console: Console, title: str, sql: str) -> None:
    """A showcase query's title and SQL, printed before it runs (every engine's demo)."""
    console.print()
    console.rule(f"[bold cyan]{title}")
    console.print(Syntax(sql, "sql", theme="ansi_dark", word_wrap=True))


def show_rows(console: Console, result: pa.Table, elapsed: float) -> None:
    console.print(rich_table(result, caption=f"{result.num_rows} rows in {elapsed:.2f} s"))


def rich_table(result: pa.Table, caption: str | None = None) -> Table:
    table = Table(caption=caption, show_lines=False, header_style="bold")
    for field in result.schema:
        numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
        table.add_column(field.name, justify="right" if numeric else "left", overflow="fold")
    for row in result.to_pylist():
        table.add_row(*(format_value(v) for v in row.values()))
    return table


def format_value(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e6 else f"{value:,.4f}".rstrip("0").rstrip(".")
    return str(value)
