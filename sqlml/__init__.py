"""sqlml: machine-learning predictions inside SQL.

The package is split along the architecture: `sqlml.bridge` hosts models (registry, runtimes,
model host, HTTP service, training), `sqlml.udfs` puts them into DuckDB, `sqlml.sql` is the
engine-neutral SQL layer (the per-model function spec, type and error maps, the batching rewriter)
and `sqlml.data` loads the offline demo data sets. `sqlml.errors` is the one error tree they share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"

# Installed, `bridge/` and `udfs/` sit inside this package (see pyproject's package-dir). From a
# source checkout on sys.path (the repo root, e.g. `python -m sqlml.cli` there), they are this
# folder's siblings: look there too, so both layouts import the same modules.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "bridge" / "__init__.py").is_file():
    __path__.append(str(_checkout))


def connect(dsn: str = "", **kwargs: Any) -> Any:
    """A psycopg connection whose queries run through the batching rewriter: see
    `sqlml.sql.postgres_connection.connect` (imported on first use, so `import sqlml` stays light)."""
    from sqlml.sql.postgres_connection import connect as rewriting_connect

    return rewriting_connect(dsn, **kwargs)
