"""`POST /v1/models/{model}/import`: publish a model trained elsewhere as the model's next version.

The body is the model itself, raw (`application/octet-stream`): an XGBoost `.json`/`.ubj` file, a
scikit-learn `.joblib`/`.pkl` file, or a tar or zip of a transformers `save_pretrained` folder.
What the body is and what its signature should be travel in the query (`kind`, `filename`,
`inputs`, `outputs`, ...), as `sqlml models import --bridge` sends them. The body is bounded by the
bridge's `max_body_bytes`, an archive's unpacked files by `max_upload_bytes`.

Scopes: `train` publishes versions (as a training job does), but a scikit-learn model is a pickle,
and unpickling runs code inside the bridge: importing one needs `admin` (docs/security.md).
Transformers weights must be safetensors for the same reason.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from sqlml.bridge import api_schemas as schemas
from sqlml.bridge.auth import ADMIN, TRAIN
from sqlml.bridge.manifest import Manifest, check_alias, check_name
from sqlml.bridge.model_archive import unpack_body
from sqlml.bridge.model_import import ImportOptions, check_kind, import_model, parse_columns, parse_labels
from sqlml.bridge.state import BridgeState, bridge_state

router = APIRouter(prefix="/v1/models", tags=["models"], responses=schemas.ERROR_RESPONSES)

OCTET_STREAM = "application/octet-stream"


class ImportResponse(BaseModel):
    model: str
    version: int
    aliases: dict[str, int]
    manifest: Manifest


@router.post(
    "/{model}/import",
    summary="Import a model trained elsewhere",
    status_code=201,
    response_model=ImportResponse,
    responses={409: schemas.ERROR_RESPONSES[400] | {"description": "Another writer took the version"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def import_route(
    model: str,
    request: Request,
    kind: Literal["xgboost", "sklearn", "transformers"] | None = Query(
        default=None, description="what the body is; default: from `filename` or the body's first bytes"
    ),
    filename: str | None = Query(default=None, max_length=255, description="the file's name, e.g. model.ubj"),
    inputs: str | None = Query(default=None, max_length=20_000, description="e.g. 'age double, plan text'"),
    outputs: str | None = Query(default=None, max_length=20_000, description="renames the outputs"),
    task: Literal["classification", "regression", "text_classification"] | None = Query(default=None),
    labels: str | None = Query(default=None, max_length=20_000, description="class labels in the model's order"),
    target: str | None = Query(default=None, max_length=63, description="the column the model predicts"),
    alias: str | None = Query(default=None, max_length=63, description="point this alias at the new version"),
    description: str = Query(default="", max_length=2000),
) -> dict[str, Any]:
    """Store the model in the body as the next version of `model`, after loading it and scoring one
    row of its signature (given, or inferred from the model)."""
    state = bridge_state(request)
    authorization = request.headers.get("authorization")
    state.auth.require(authorization, TRAIN)
    check_name(model)
    if alias:
        check_alias(alias)
    if target:
        check_name(target, "target column name")
    options = ImportOptions(
        kind=kind,
        inputs=parse_columns(inputs, "inputs") if inputs else None,
        outputs=parse_columns(outputs, "outputs") if outputs else None,
        task=task,
        labels=parse_labels(labels) if labels else None,
        target=target or "",
        description=description,
        source=filename or "",
    )
    body = await request.body()

    def run() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="sqlml-import-body-") as scratch:
            source = unpack_body(body, filename, Path(scratch), state.settings.max_upload_bytes)
            found = check_kind(options.kind, source)
            if found == "sklearn":  # unpickling runs the file's code in the bridge
                state.auth.require(authorization, ADMIN)
            manifest = import_model(state.registry, model, source, _with_kind(options, found), alias)
        return _answer(state, manifest)

    return await anyio.to_thread.run_sync(run)


def _with_kind(options: ImportOptions, kind: str) -> ImportOptions:
    return replace(options, kind=kind)


def _answer(state: BridgeState, manifest: Manifest) -> dict[str, Any]:
    return {
        "model": manifest.name,
        "version": manifest.version,
        "aliases": state.registry.aliases(manifest.name),
        "manifest": manifest,
    }
