"""The batch scoring functions: ml.predict_batch, ml.sentiment_batch, and ml._predict_rows (the
SECURITY DEFINER step of ml.predict_query).

Rows go to the bridge in requests sized by `ChunkSizer`. In `sqlml.on_error = 'null'` mode a
rejected request is halved until the rows responsible are found, and only those get NULL, so one bad
row does not cost the others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlml.sql.sentiment import SCORE_FIELDS

from .bridge_http import Bridge
from .model_names import check_model
from .row_scoring import is_object_text, result_json
from .settings import Settings
from .sql_errors import BridgeError, Warnings
from .sql_function import SqlCall, bridge_function

# Codes that a single bad row can cause: in on_error = 'null' mode a rejected batch is split to
# find the rows responsible. Other failures (bridge down, timeout) affect every row alike.
ROW_LEVEL_CODES = frozenset({"invalid_input", "bad_request"})


class ChunkSizer:
    """Rows per request of the batch paths. It starts at the bridge's default batch size (64) and
    doubles while requests come back in under an eighth of sqlml.timeout_ms, up to sqlml.batch_size;
    one that takes over half of it halves the next. So a fast model soon sends sqlml.batch_size rows
    per request, while a CPU transformer's requests stay at what it scores in a fraction of the
    timeout, and no request of the batch paths outlasts sqlml.timeout_ms by its size alone."""

    START = 64

    def __init__(self, settings: Settings, start: int = START):
        self.limit = settings.batch_size
        self.timeout_s = settings.timeout_ms / 1000.0
        self.size = max(1, min(start, self.limit))

    def record(self, rows: int, seconds: float) -> None:
        if seconds > self.timeout_s / 2:
            self.size = max(1, self.size // 2)
        elif seconds < self.timeout_s / 8 and rows >= self.size:
            self.size = min(self.limit, self.size * 2)

    @contextmanager
    def timing(self, rows: int) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.record(rows, time.monotonic() - started)


def score_rows(bridge: Bridge, model: str, rows_json: Sequence[str], warnings: Warnings) -> list[Any]:
    """Outputs for `rows_json`; in 'null' mode a rejected batch is halved until the bad rows are
    found (log2(n) extra requests per bad row) and those rows get None."""
    try:
        return bridge.predict(model, rows_json)
    except BridgeError as error:
        if bridge.settings.on_error != "null":
            raise
        return after_failure(bridge, model, rows_json, error, warnings)


def after_failure(
    bridge: Bridge, model: str, rows_json: Sequence[str], error: BridgeError, warnings: Warnings
) -> list[Any]:
    """'null' mode, once `rows_json` failed as a whole with `error`: a row-level error halves the
    batch to find the bad rows; any other (or a single row) sets them all to None with a warning."""
    if error.code in ROW_LEVEL_CODES and len(rows_json) > 1:
        middle = len(rows_json) // 2
        return score_rows(bridge, model, rows_json[:middle], warnings) + score_rows(
            bridge, model, rows_json[middle:], warnings
        )
    warnings.warn(error, len(rows_json))
    return [None] * len(rows_json)


@bridge_function
def predict_batch(call: SqlCall, model: str, rows: Sequence[str | None]) -> Iterator[tuple[int, str | None]]:
    """ml.predict_batch(model, jsonb[]) -> (ord, result), ord 1-based, NULL element -> NULL result."""
    check_model(model)
    sizer, start = ChunkSizer(call.settings), 0
    while start < len(rows):
        chunk = rows[start : start + sizer.size]
        with sizer.timing(len(chunk)):
            scored = list(_score_chunk(call.bridge, model, chunk, start, call.warnings))
        yield from scored
        start += len(chunk)


def _score_chunk(
    bridge: Bridge, model: str, chunk: Sequence[str | None], offset: int, warnings: Warnings
) -> Iterator[tuple[int, str | None]]:
    present = [i for i, row in enumerate(chunk) if row is not None]
    bad = [i for i in present if not is_object_text(chunk[i])]  # type: ignore[arg-type]
    if bad:
        error = BridgeError(
            "invalid_input",
            f"element {offset + bad[0] + 1} of the rows array is not a JSON object",
            hint="each element must be an object of column: value, e.g. to_jsonb(t)",
        )
        if bridge.settings.on_error != "null":
            raise error
        warnings.warn(error, len(bad))
        present = [i for i in present if i not in set(bad)]
    outputs = score_rows(bridge, model, [chunk[i] for i in present], warnings) if present else []  # type: ignore[misc]
    results: list[str | None] = [None] * len(chunk)
    for position, output in zip(present, outputs, strict=True):
        results[position] = result_json(output)
    for position, result in enumerate(results):
        yield offset + position + 1, result


@bridge_function
def predict_rows_json(call: SqlCall, model: str, rows_json: str) -> str:
    """ml._predict_rows(model, text): the SECURITY DEFINER step of ml.predict_query — scores a JSON
    array of row objects and returns a JSON array of results (null for failed rows)."""
    check_model(model)
    bridge = call.bridge
    try:  # the array goes to the bridge as it came, unparsed: the common case costs no JSON work here
        outputs = bridge.predict_array(model, rows_json)
    except BridgeError as error:
        if bridge.settings.on_error != "null":
            raise
        # one text per row, so that the failed batch can be halved down to the bad rows
        texts = [json.dumps(row, separators=(",", ":")) for row in json.loads(rows_json)]
        outputs = after_failure(bridge, model, texts, error, call.warnings)
    return json.dumps([result_json(o) for o in outputs])


@bridge_function
def sentiment_batch(call: SqlCall, texts: Sequence[str | None]) -> Iterator[tuple[Any, ...]]:
    """ml.sentiment_batch(text[]) -> (ord, label, confidence, score_positive, ..., score_mixed);
    a version that gives no scores has NULL scores."""
    settings, model = call.settings, call.settings.sentiment_model
    sizer, start = ChunkSizer(settings), 0
    while start < len(texts):
        chunk = list(texts[start : start + sizer.size])
        try:
            with sizer.timing(len(chunk)):
                columns = call.bridge.predict_columns(model, {"text": chunk}, len(chunk))
            labels, confidences = columns.get("label"), columns.get("confidence")
            if labels is None or confidences is None:
                raise BridgeError("bad_response", f'model "{model}" did not return label and confidence')
            scores = [columns.get(name) or [None] * len(chunk) for name in SCORE_FIELDS]
        except BridgeError as error:
            if settings.on_error != "null":
                raise
            call.warnings.warn(error, len(chunk))
            labels = confidences = [None] * len(chunk)
            scores = [[None] * len(chunk) for _ in SCORE_FIELDS]
        for position, (label, *values) in enumerate(zip(labels, confidences, *scores, strict=True)):
            yield start + position + 1, label, *((v if label is not None else None) for v in values)
        start += len(chunk)
