"""Superset configuration for the sqlml dashboards (loaded through `SUPERSET_CONFIG_PATH`).

Superset runs in its own virtual environment (its pins conflict with sqlml's), so this file imports
nothing from sqlml. Everything that differs between a laptop, CI and docker-compose comes from the
environment:

    SUPERSET_SECRET_KEY    required; signs sessions and encrypts stored database passwords
    SQLML_SUPERSET_HOME    folder for the metadata database and logs (default ~/.sqlml/superset)
    SQLML_REWRITE_COMMAND  command that rewrites per-row ml.* calls into batched calls, reading SQL
                           on stdin and writing SQL on stdout (e.g. `/repo/.venv/bin/sqlml sql rewrite
                           --dialect postgres`); unset or missing means queries run unchanged

The SQL mutator hook sends every query on a PostgreSQL database that has the sqlml extension through
that command: a chart written with `ml.sentiment(body)` per row then executes as one batched call.
The rewriter lives in sqlml's venv (it needs a newer sqlglot than Superset's), hence a subprocess.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
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

# --- SQL mutator: batch per-row ml.* calls on databases with the sqlml extension --------------------

_REWRITE_TIMEOUT_S = float(os.environ.get("SQLML_REWRITE_TIMEOUT_S", "10"))
_REWRITE_CACHE_SIZE = 512
_rewrite_cache: OrderedDict[str, str] = OrderedDict()
_warned_unavailable = False


def _database_has_sqlml(database: Any) -> bool:
    """The extension lives in PostgreSQL; the DuckDB snapshot file answers ml.* from stored results."""
    if database is None:
        return False
    backend = getattr(database, "backend", "") or ""
    return backend.startswith("postgres")


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
    _rewrite_cache[sql] = rewritten
    if len(_rewrite_cache) > _REWRITE_CACHE_SIZE:
        _rewrite_cache.popitem(last=False)
    return rewritten


# Mutate each statement after Superset has split and re-formatted it, just before it executes:
# Superset's older sqlglot would otherwise re-render the rewritten SQL and lose Postgres-only syntax
# the rewriter emits (`unnest(...) WITH ORDINALITY AS u(k, ord)` came out without its `ord` column).
MUTATE_AFTER_SPLIT = True


# Superset looks the hook up by this name.
def SQL_QUERY_MUTATOR(sql: str, **kwargs: Any) -> str:
    if not _database_has_sqlml(kwargs.get("database")):
        return sql
    return rewrite_ml_calls(sql)
