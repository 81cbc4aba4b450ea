"""The errors a model call can end in that need the model to say: one factory each, shared by the
host (which wraps runtime failures), the batcher and the explain / forecast turns (which queue)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlml.errors import SqlmlError, Unavailable, library_error_text

if TYPE_CHECKING:
    from sqlml.bridge.host import LoadedModel


def overloaded(model: LoadedModel, queued: int) -> Unavailable:
    """The 503 for a model version whose queue is full (the batcher's, or explain / forecast turns)."""
    return Unavailable(
        f'model "{model.manifest.name}" is overloaded ({queued} requests queued)',
        hint="retry later, send larger batches, or run more bridge replicas",
    )


def model_failure(model: LoadedModel, operation: str, exc: Exception) -> SqlmlError:
    """A runtime that raises on valid input is a model bug: a 500 with the model named (and the
    library's reason, without its native stack frames or install paths)."""
    m = model.manifest
    return SqlmlError(
        f'model "{m.name}" version {m.version} failed in {operation}: {library_error_text(exc)}',
        detail={"model": m.name, "version": m.version},
    )
