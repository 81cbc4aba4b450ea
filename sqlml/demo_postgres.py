"""`sqlml demo --postgres DSN`: the demo's tables and showcase SQL in PostgreSQL, the models on a bridge.

The same data as the DuckDB demo (the tables are copied from `$SQLML_HOME/demo.duckdb`, built
first if needed), the same three questions asked in PostgreSQL's SQL through the `sqlml`
extension. PostgreSQL never runs a model: the extension calls the bridge at `--bridge`, which must
already be running over the store the demo trains into. A bridge that does not answer is never
started behind the user's back: the command says how to start it and exits non-zero.

Reviews and leads are copied by the dashboards' own provisioning code (`dashboards/demo_tables.py`,
which owns only the relations it marked); `power` is copied here, under the same marker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import psycopg
import pyarrow as pa
from psycopg import sql
from rich.console import Console
from rich.markup import escape

from sqlml import config
from sqlml.bridge.registry import Registry
from sqlml.demo import TRAINERS, ensure_models, show_rows, show_sql
from sqlml.demo_data import build_demo_database
from sqlml.errors import Conflict, NotFound, Unauthorized, Unavailable

DEFAULT_BRIDGE = "http://127.0.0.1:8765"
SCHEMA = "public"
# A cold bridge loads each model on its first call (the sentiment encoder takes seconds).
SESSION_TIMEOUT_MS = 60_000
POWER_COLUMNS = (("ts", "timestamp"), ("series", "text"), ("value", "double precision"))

NO_AUTH_NOTE = (
    " (--no-auth suits a demo on this machine; a bridge with tokens (SQLML_TOKENS) needs this command's"
    " --token or SQLML_TOKEN, which it stores with ml.set_token)"
)

Report = Callable[[str], None]

SENTIMENT_SQL = r"""-- How do customers feel about each kind of product? Reviews are grouped by keywords
-- (a sample of 200 held-out reviews; ml.sentiment is one request per row).
SELECT category,
       count(*) FILTER (WHERE (s).label = 'positive') AS positive,
       count(*) FILTER (WHERE (s).label = 'neutral')  AS neutral,
       count(*) FILTER (WHERE (s).label = 'negative') AS negative,
       round(avg((s).confidence)::numeric, 2)         AS avg_confidence
FROM (
    SELECT CASE
               WHEN body ~* '\y(coffee|espresso|k-?cups?)\y' THEN 'coffee'
               WHEN body ~* '\y(teas?|chai|matcha)\y' THEN 'tea'
               WHEN body ~* '\y(dogs?|puppy|cats?|kitten|pets?)\y' THEN 'pet food'
               WHEN body ~* '\y(chocolate|candy|cookies?|gum)\y' THEN 'sweets'
               WHEN body ~* '\y(chips|crackers|popcorn|snacks?|bars?)\y' THEN 'snacks'
               ELSE 'other'
           END AS category,
           ml.sentiment(body) AS s
    FROM reviews
    WHERE split = 'test' AND review_id % 5 = 0
) AS r
GROUP BY category
ORDER BY count(*) DESC, category"""

LEADS_SQL = """-- The ten most promising leads, and the three features that push each score most
WITH best AS (
    SELECT key::bigint AS lead_id, (result->>'probability')::float8 AS probability
    FROM ml.predict_query('lead_score', 'SELECT * FROM leads', 'lead_id')  -- every lead, in batches
    ORDER BY probability DESC, lead_id
    LIMIT 10
)
SELECT b.lead_id,
       round(b.probability::numeric, 3) AS probability,
       (SELECT string_agg(format('%s=%s (%s)', e.feature, e.value::bigint, to_char(e.contribution, 'SG0.00')), ', ')
        FROM ml.explain('lead_score', to_jsonb(l) - 'lead_id' - 'purchased', 3) AS e) AS top_reasons
FROM best b JOIN leads l USING (lead_id)
ORDER BY b.probability DESC, b.lead_id"""

FORECAST_SQL = """-- The next 48 hours of household power, with an 80 % band
SELECT ts,
       round(max(value) FILTER (WHERE quantile = 'p10')::numeric, 3) AS p10,
       round(max(value) FILTER (WHERE quantile = 'p50')::numeric, 3) AS p50,
       round(max(value) FILTER (WHERE quantile = 'p90')::numeric, 3) AS p90
FROM ml.forecast('household_power', series => 'global_active_power', horizon => 48)
GROUP BY ts
ORDER BY ts"""

SHOWCASE = (
    ("Sentiment mix by kind of product", SENTIMENT_SQL),
    ("Best leads and why", LEADS_SQL),
    ("Power forecast (global_active_power)", FORECAST_SQL),
)


def run_postgres_demo(
    dsn: str,
    *,
    bridge_url: str = DEFAULT_BRIDGE,
    token: str | None = None,
    console: Console | None = None,
    registry: Registry | None = None,
    db_path: Path | None = None,
    rebuild: bool = False,
    trainers: dict[str, str] | None = None,
) -> dict[str, pa.Table]:
    """Load the demo tables into `dsn`'s database, point it at the bridge, run the showcase; title -> rows."""
    console = console or Console()
    registry = registry or Registry(config.store_url())
    db_path = db_path or config.demo_db_path()
    started = time.perf_counter()

    def report(line: str) -> None:
        console.print(f"[dim]{escape(line)}")

    console.rule("[bold]sqlml demo in PostgreSQL")
    build_demo_database(db_path, rebuild=rebuild, log=report)
    ensure_bridge(bridge_url, token, registry, console, trainers if trainers is not None else TRAINERS)
    with connect(dsn, report) as conn:
        conn.add_notice_handler(lambda notice: report(f"{notice.severity}: {notice.message_primary}"))
        counts = load_demo_tables(conn, db_path, report)
        report("tables: " + ", ".join(f"{table} {rows:,} rows" for table, rows in counts.items()))
        prepare_extension(conn, bridge_url, token, report)
        results = {title: show(console, conn, title, query) for title, query in SHOWCASE}
    console.print(f"[dim]demo finished in {time.perf_counter() - started:.1f} s")
    return results


# -- the bridge ---------------------------------------------------------------------------------


def ensure_bridge(url: str, token: str | None, registry: Registry, console: Console, trainers: dict[str, str]) -> None:
    """Stop, saying what to do, unless the bridge at `url` answers and serves every demo model.

    Models the bridge lacks are trained into `registry` first (the demo's first run), so the
    command to start a bridge over that store is all that is left to do.
    """
    served = served_models(url, token)
    if served is not None and set(trainers) <= served:
        return
    ensure_models(registry, console, trainers)
    served = served_models(url, token)  # a bridge over this store serves new versions at once
    if served is None:
        raise Unavailable(
            f"no bridge answers at {url}; the demo's models are in the store {registry.url}",
            hint=f"start one in another terminal, then run this command again: {serve_command(url, registry, token)}",
        )
    missing = sorted(set(trainers) - served)
    if missing:
        raise NotFound(
            f"the bridge at {url} does not serve {', '.join(missing)}",
            hint=f"serve the store the demo trained into: {serve_command(url, registry, token)}",
        )


def served_models(url: str, token: str | None) -> set[str] | None:
    """The names the bridge at `url` serves; None when nothing answers there."""
    from sqlml.bridge.http_client import BridgeClient

    try:
        with BridgeClient(url, token=token, timeout=10.0) as client:
            return {str(model["name"]) for model in client.models()}
    except Unavailable:
        return None
    except Unauthorized as exc:
        raise Unauthorized(
            f"the bridge at {url} refused the demo's request: {exc.message}",
            hint="pass the bridge's token with --token or SQLML_TOKEN (scope predict:*); "
            "the demo stores it in PostgreSQL with ml.set_token",
        ) from exc


def serve_command(url: str, registry: Registry, token: str | None) -> str:
    """The `sqlml serve` line that serves `registry` at `url` (with a token: the bridge must know it)."""
    parts = urlsplit(url)
    command = ["sqlml", "serve"]
    if parts.hostname not in (None, "127.0.0.1", "localhost"):
        command += ["--host", "0.0.0.0"]
    command += ["--port", str(parts.port or 8765), "--store", registry.url]
    if token is None:
        return " ".join([*command, "--no-auth"]) + NO_AUTH_NOTE
    return 'SQLML_TOKENS=\'{"<your token>": ["predict:*"]}\' ' + " ".join(command)


# -- PostgreSQL ---------------------------------------------------------------------------------


def connect(dsn: str, report: Report) -> psycopg.Connection[Any]:
    """An autocommit connection to `dsn`, creating its database first if the server lacks it."""
    database = psycopg.conninfo.conninfo_to_dict(dsn).get("dbname")
    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        if not database or f'database "{database}" does not exist' not in str(exc):
            raise
    maintenance = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(database))))
    report(f"created database {database}")
    return psycopg.connect(dsn, autocommit=True)


def load_demo_tables(conn: psycopg.Connection[Any], demo_db: Path, report: Report) -> dict[str, int]:
    """reviews and leads (and the view lead_features) as the dashboards load them, then power."""
    demo_tables = _dashboards("demo_tables")
    with _provisioning_refusals():
        demo_tables.check_ownership(conn, "power", "r")  # before anything is written
        counts: dict[str, int] = demo_tables.copy_demo_tables(conn, demo_db, report)
        counts["power"] = load_power(conn, demo_db, demo_tables.marker_comment("table"))
    return counts


def load_power(conn: psycopg.Connection[Any], demo_db: Path, comment: str) -> int:
    """Create or refresh `public.power` (one transaction), marked with `comment` as the demo's own."""
    with duckdb.connect(str(demo_db), read_only=True) as source:
        rows = source.execute("SELECT ts, series, value FROM power ORDER BY series, ts").fetchall()
    table = sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier("power"))
    columns = sql.SQL(", ").join(
        sql.SQL("{} {} NOT NULL").format(sql.Identifier(c), sql.SQL(t)) for c, t in POWER_COLUMNS
    )
    names = sql.SQL(", ").join(sql.Identifier(c) for c, _type in POWER_COLUMNS)
    with conn.transaction():
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY (series, ts))").format(table, columns))
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(comment)))
        conn.execute(sql.SQL("DELETE FROM {}").format(table))
        with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table, names)) as copy:
            for row in rows:
                copy.write_row(row)
    return len(rows)


def prepare_extension(conn: psycopg.Connection[Any], bridge_url: str, token: str | None, report: Report) -> None:
    """The extension, the database's bridge URL, the token (if any), and ml.sync()'s typed functions."""
    for extension in ("plpython3u", "sqlml"):
        conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension)))
    database = str(conn.execute("SELECT current_database()").fetchall()[0][0])
    postgres = _dashboards("postgres")
    postgres.apply_database_settings(conn, database, {"sqlml.bridge_url": bridge_url}, report)
    # ALTER DATABASE reaches new sessions only: this one is pointed at the bridge by hand.
    conn.execute("SELECT set_config('sqlml.bridge_url', %s, false)", [bridge_url])
    conn.execute("SELECT set_config('sqlml.timeout_ms', %s, false)", [str(SESSION_TIMEOUT_MS)])
    if token:
        conn.execute("SELECT ml.set_token(%s, NULL, %s)", [token, bridge_url])
        report(f"SELECT ml.set_token(<token>, NULL, '{bridge_url}'): the default token, sent only to that URL")
    synced = conn.execute("SELECT model, function, action FROM ml.sync() ORDER BY model").fetchall()
    report("ml.sync(): " + ", ".join(f"ml.{model}(...) {action}" for model, _function, action in synced))


def show(console: Console, conn: psycopg.Connection[Any], title: str, query: str) -> pa.Table:
    """Print the SQL, run it in PostgreSQL, print the rows as a table; returns the rows."""
    show_sql(console, title, query)
    started = time.perf_counter()
    cursor = conn.execute(query)
    names = [column.name for column in cursor.description or ()]
    rows = cursor.fetchall()
    result = pa.table({name: pa.array([_plain(row[i]) for row in rows]) for i, name in enumerate(names)})
    show_rows(console, result, time.perf_counter() - started)
    return result


def _plain(value: Any) -> Any:
    """numeric (what round() gives) as float, so the table prints it as a number."""
    return float(value) if isinstance(value, Decimal) else value


@contextmanager
def _provisioning_refusals() -> Iterator[None]:
    """The dashboards' refusal to touch a relation it did not create, as sqlml's Conflict."""
    provision = _dashboards("provision")
    try:
        yield
    except provision.ProvisionError as exc:
        raise Conflict(
            str(exc), hint="`sqlml demo --postgres` loads the tables `sqlml superset up` loads; use another database"
        ) from exc


def _dashboards(module: str) -> Any:
    from sqlml.commands.superset import dashboards_module

    return dashboards_module(module)


def describe_postgres_error(exc: psycopg.Error) -> tuple[str, str | None]:
    """(message, hint) of a PostgreSQL error, for the CLI's one-line failure."""
    diag = exc.diag
    message = diag.message_primary or str(exc).strip()
    if diag.sqlstate:
        message = f"{message} (SQLSTATE {diag.sqlstate})"
    return f"PostgreSQL: {message}", diag.message_hint
