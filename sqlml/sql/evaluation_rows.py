"""An evaluation as SQL rows: what `ml.evaluate(model, query)` returns on both engines.

The bridge answers `POST /v1/models/{name}/evaluate` with metrics, row counts and (classification)
a confusion matrix; SQL gets one `(metric, value)` row each, the matrix as
`confusion:<actual>:<predicted>` rows. Standard library only: the PostgreSQL helper is built with
this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def evaluation_rows(result: Mapping[str, Any]) -> list[tuple[str, float]]:
    rows = [("rows", float(result.get("rows") or 0)), ("skipped_rows", float(result.get("skipped_rows") or 0))]
    rows += [(str(name), float(value)) for name, value in sorted((result.get("metrics") or {}).items())]
    matrix = result.get("confusion_matrix") or {}
    labels = matrix.get("labels") or []
    for actual, counts in zip(labels, matrix.get("counts") or [], strict=False):
        rows += [(f"confusion:{actual}:{predicted}", float(n)) for predicted, n in zip(labels, counts, strict=False)]
    return rows
