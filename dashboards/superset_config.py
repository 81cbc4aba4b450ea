"""Superset configuration for the sqlml dashboards (loaded through `SUPERSET_CONFIG_PATH`).

Superset runs in its own virtual environment (its pins conflict with sqlml's), so this file imports
nothing from sqlml. Everything that differs between a laptop, CI and docker-compose comes from the
environment:

    SUPERSET_SECRET_KEY    required; signs sessions and encrypts stored database passwords
    SQLML_SUPERSET_HOME    folder for the metadata database and logs (default ~/.sqlml/superset)
    SQLML_REWRITE_COMMAND  command that rewrites per-row ml.* calls into batched calls, reading SQL
                           on stdin and writing SQL on stdout (e.g. `/repo/.venv/bin/sqlml sql rewrite
                           --dialect postgres`); unset or missing means queries run unchanged

Every statement Superset executes on a PostgreSQL database (SQL Lab, charts, dashboards) goes
through that command as it reaches the database cursor: a query written with `ml.sentiment(body)`
per row then executes as one batched call. The rewriter lives in sqlml's venv (it needs a newer
sqlglot than Superset's), hence a subprocess.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

logger = logging.getLogger("sqlml.superset")

SECRET_KEY = os.environ.get("SUPERSET_SECRET_KEY", "")
if not SECRET_KEY:
    raise RuntimeError(
        "SUPERSET_SECRET_KEY is not set: export a long random string (e.g. `openssl rand -base64 42`); "
        "`sqlml superset up` generates one and keeps it in $SQLML_HOME/superset/secret_key"
    )

SUPERSET_HOME = Path(os.environ.get("SQLML_SUPERSET_HOME", Path.home() / ".sqlml" / "superset")).expanduser()
SUPERSET_HOME.mkdir(parents=True, exist_ok=True)
DATA_DIR = str(SUPERSET_HOME)
SQLALCHEMY_DATABASE_URI = os.environ.get("SUPERSET_DATABASE_URI", f"sqlite:///{SUPERSET_HOME / 'superset.db'}")

# A single local instance: the simple in-process caches are enough, and they avoid the metastore cache
# that breaks with flask-caching >= 2.5 (the requirements pin 2.3.1 as well).
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}
FILTER_STATE_CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 86400}
EXPLORE_FORM_DATA_CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 86400}

# Served on 127.0.0.1 only (or behind compose's network); no HTTPS redirect, no example data.
TALISMAN_ENABLED = False
SESSION_COOKIE_SECURE = False
ENABLE_PROXY_FIX = os.environ.get("SUPERSET_ENABLE_PROXY_FIX", "") == "1"
SQLLAB_CTAS_NO_LIMIT = True
ROW_LIMIT = 50000
# Model calls are slower than plain scans; give charts time before Superset gives up on them.
SUPERSET_WEBSERVER_TIMEOUT = 120
SQLLAB_TIMEOUT = 120

# Render every chart of a dashboard at once (not only those scrolled into view): screenshots and tests
# see whole dashboards.
FEATURE_FLAGS = {"DASHBOARD_RBAC": False, "DASHBOARD_VIRTUALIZATION": False}

# --- The rewriter: batch per-row ml.* calls ------------------------------------------------------------

_REWRITE_TIMEOUT_S = float(os.environ.get("SQLML_REWRITE_TIMEOUT_S", "10"))
_REWRITE_CACHE_SIZE = 512
_rewrite_cache: OrderedDict[str, str] = OrderedDict()
_rewrite_cache_lock = threading.Lock()  # gunicorn runs Superset with 8 threads; a dashboard's charts load at once
_warned_unavailable = False
_warned_drivers: set[str] = set()


def _rewrite_command() -> list[str] | None:
    global _warned_unavailable
    command = shlex.split(os.environ.get("SQLML_REWRITE_COMMAND", ""))
    if command and Path(command[0]).exists():
        return command
    if not _warned_unavailable:
        logger.info("sqlml rewriter not available (SQLML_REWRITE_COMMAND=%r): ml.* queries run unchanged", command)
        _warned_unavailable = True
    return None


def rewrite_ml_calls(sql: str) -> str:
    """The batched form of `sql` from sqlml's rewriter, or `sql` itself when it cannot be rewritten.

    Dashboards send the same statements again and again, so results are cached by statement text.
    Any failure leaves the query as written: it still runs, just per row.
    """
    if "ml." not in sql.lower():
        return sql
    with _rewrite_cache_lock:
        cached = _rewrite_cache.get(sql)
        if cached is not None:
            _rewrite_cache.move_to_end(sql)
            return cached
    command = _rewrite_command()
    if command is None:
        return sql
    try:
        completed = subprocess.run(
            command, input=sql, capture_output=True, text=True, timeout=_REWRITE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("sqlml rewriter failed (%s); running the query unchanged", exc)
        return sql
    if completed.returncode != 0 or not completed.stdout.strip():
        logger.warning("sqlml rewriter exited %s: %s", completed.returncode, completed.stderr.strip()[-500:])
        return sql
    rewritten = completed.stdout.strip()
    if rewritten != sql.strip():
        logger.info("sqlml rewriter batched ml.* calls in a %d-character query", len(sql))
    with _rewrite_cache_lock:
        _rewrite_cache[sql] = rewritten
        if len(_rewrite_cache) > _REWRITE_CACHE_SIZE:
            _rewrite_cache.popitem(last=False)
    return rewritten


# --- Batching per-row ml.* calls on PostgreSQL: a cursor that rewrites what it executes ----------------
#
# Why a cursor, not SQL_QUERY_MUTATOR: Superset (6.1) calls the mutator from several places with two
# meanings of `is_split` and does not tell the mutator which call it is. SQL Lab calls it once per
# statement with is_split=False, right before the cursor (sql_lab.py); charts call it with
# is_split=False on the whole query (models/helpers.py), then re-format each statement with
# Superset's own sqlglot and call it again with is_split=True (Database.get_df). MUTATE_AFTER_SPLIT
# picks one flag for every caller: True skipped SQL Lab (1,000 rows were 1,000 bridge requests);
# False lets Superset's older sqlglot re-render the charts' rewritten SQL, which drops Postgres-only
# syntax the rewriter emits (`unnest(...) WITH ORDINALITY AS u(k, ord)` lost its `ord`). Every path
# (SQL Lab, charts, dashboards, dataset previews) ends in `cursor.execute(sql)` on a DBAPI connection
# that Superset opens with the engine's `connect_args`, after DB_CONNECTION_MUTATOR had its say. The
# cursor is the one place each statement passes exactly once, after Superset's last re-render. (So
# SQL Lab's query history shows the SQL as written; the log says which statements were batched.)


def rewriting_cursor(base: type) -> type:
    """A subclass of the DBAPI cursor class `base` whose `execute(sql)` runs the batched form of `sql`.

    Only statements without parameters are rewritten: Superset sends its queries that way, and with
    parameters the text holds placeholders and doubled `%` that the rewriter must not see.
    """

    class RewritingCursor(base):  # type: ignore[misc]  # a base known only at run time
        def execute(self, query: Any, vars: Any = None) -> Any:
            if vars is None and isinstance(query, str):
                query = rewrite_ml_calls(query)
            return super().execute(query, vars)

    return RewritingCursor


_rewriting_psycopg2_cursor: type | None = None


def _psycopg2_rewriting_cursor() -> type:
    global _rewriting_psycopg2_cursor
    if _rewriting_psycopg2_cursor is None:
        import psycopg2.extensions  # Superset's venv has it; sqlml's (which loads this file in tests) need not

        _rewriting_psycopg2_cursor = rewriting_cursor(psycopg2.extensions.cursor)
    return _rewriting_psycopg2_cursor


# Superset looks the hook up by this name and calls it for every engine it creates, with the
# arguments of `create_engine(uri, **params)`.
def DB_CONNECTION_MUTATOR(
    uri: Any, params: dict[str, Any], username: str | None, security_manager: Any, source: Any
) -> tuple[Any, dict[str, Any]]:
    """Give PostgreSQL connections (psycopg2, the driver of the assets' URI) the rewriting cursor."""
    if uri.get_backend_name() != "postgresql" or _rewrite_command() is None:
        return uri, params
    driver = uri.get_driver_name()
    if driver != "psycopg2":
        if driver not in _warned_drivers:
            logger.warning("sqlml rewriter needs psycopg2, not %s: ml.* queries run unchanged", driver)
            _warned_drivers.add(driver)
        return uri, params
    connect_args = params.setdefault("connect_args", {})
    connect_args.setdefault("cursor_factory", _psycopg2_rewriting_cursor())
    return uri, params
