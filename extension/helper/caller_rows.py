"""The caller's rows as JSON: read by a SECURITY INVOKER function, checked by a DEFINER step.

ml.evaluate and ml.forecast (its `future` and `history` queries) run the caller's query text with
the caller's rights through a server-side cursor, and hand the rows, as one JSON array, to the
SECURITY DEFINER step that alone reads the bridge token (ml._evaluate_rows, ml._forecast_rows).
Any role that may call the invoker function may call that step directly, so the step parses the
text it is handed and refuses anything but an array of row objects before a request is made.
"""

from __future__ import annotations

import json
from typing import Any

from .plpy_api import Plpy
from .query_text import check_query
from .settings import MAX_BATCH_SIZE
from .sql_errors import BridgeError, from_spi_error

FETCH_ROWS = 1_000


def caller_rows_json(plpy: Plpy, query: str, what: str) -> str:
    """The rows of the caller's query as one JSON array (text), at most MAX_BATCH_SIZE of them
    (one request to the bridge); `what` names them in errors ("ml.evaluate", "ml.forecast future")."""
    body = check_query(query, what)
    wrapped = f"SELECT pg_catalog.to_jsonb(q)::pg_catalog.text AS row FROM (\n{body}\n) AS q"
    rows: list[str] = []
    try:
        cursor = plpy.cursor(wrapped)
        while True:
            fetched = cursor.fetch(FETCH_ROWS)
            if not fetched:
                break
            rows.extend(str(r["row"]) for r in fetched)
            if len(rows) > MAX_BATCH_SIZE:
                raise BridgeError(
                    "payload_too_large",
                    f"{what} takes at most {MAX_BATCH_SIZE} rows (one request to the bridge)",
                    hint="use a sample: ... ORDER BY random() LIMIT 100000",
                )
    except plpy.SPIError as exc:
        raise from_spi_error(exc) from None
    return "[" + ",".join(rows) + "]"


def json_rows(text: str, what: str) -> list[dict[str, Any]]:
    """`text` parsed, when it is a JSON array of row objects; anything else is a 22023 error."""
    try:
        rows = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        rows = None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise BridgeError("invalid_input", f"{what} takes a JSON array of row objects")
    return rows
