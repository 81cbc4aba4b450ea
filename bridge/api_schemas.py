"""Request and response bodies of the bridge's HTTP API (they are what OpenAPI documents)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sqlml.bridge.manifest import Manifest
from sqlml.bridge.wire import ARROW_STREAM


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. model_not_found")
    message: str
    hint: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorBody


class Batch(BaseModel):
    """A batch in one of two shapes: `columns` (name -> list) or `rows` (list of objects)."""

    model_config = ConfigDict(extra="forbid")

    columns: dict[str, list[Any]] | None = Field(default=None, examples=[{"text": ["great coffee", None]}])
    rows: list[dict[str, Any]] | None = Field(default=None, examples=[[{"text": "great coffee"}]])


class PredictRequest(Batch):
    pass


class ExplainRequest(Batch):
    top_k: int = Field(default=5, ge=1, le=10_000)


class EvaluateRequest(Batch):
    """Rows with the model's inputs and its target column."""


class ConfusionMatrix(BaseModel):
    labels: list[str]
    counts: list[list[int]] = Field(description="counts[i][j]: rows of class labels[i] predicted as labels[j]")


class EvaluateResponse(BaseModel):
    model: str
    version: int
    rows: int = Field(description="rows compared (those with a target value)")
    skipped_rows: int = Field(description="rows left out because their target is NULL")
    metrics: dict[str, float]
    confusion_matrix: ConfusionMatrix | None = None


class BatchResponse(BaseModel):
    """Outputs in the shape of the request; one output row per input row, in order."""

    model: str
    version: int
    columns: dict[str, list[Any]] | None = None
    rows: list[dict[str, Any]] | None = None


class ForecastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    series: list[str] | None = Field(default=None, description="series to forecast; null: all the model knows")
    horizon: int = Field(default=48, ge=1, le=100_000)
    quantiles: list[str] = Field(
        default_factory=lambda: ["p10", "p50", "p90"],
        min_length=1,
        max_length=100,
        description='"p1".."p99" or "mean"',
    )
    future: list[dict[str, Any]] | None = Field(
        default=None,
        description="covariate values for every step of the horizon, one object per step (and series): ts, "
        "[series,] and each covariate the model was trained with; only for models with covariates",
        examples=[[{"ts": "2024-03-01", "promo": True}, {"ts": "2024-03-02", "promo": False}]],
    )
    history: list[dict[str, Any]] | None = Field(
        default=None,
        description="observations to forecast from instead of the history stored with the model: ts, [series,] "
        "value; put on the model's frequency grid, the forecast starts the step after the last ts",
        examples=[[{"ts": "2024-02-28", "value": 118.0}, {"ts": "2024-02-29", "value": 121.5}]],
    )


class ForecastRow(BaseModel):
    series: str
    ts: str = Field(description="ISO 8601 timestamp")
    quantile: str
    value: float | None


class ForecastResponse(BaseModel):
    model: str
    version: int
    rows: list[ForecastRow]


class ModelSummary(BaseModel):
    """A model and its default version; a model the store cannot describe (a corrupt manifest or
    aliases file) has `error` and none of the manifest's fields."""

    name: str
    version: int | None = Field(default=None, description="the default version; null when it cannot be resolved")
    versions: list[int]
    aliases: dict[str, int]
    task: str | None = None
    runtime: str | None = None
    description: str | None = None
    signature: dict[str, Any] | None = None
    metrics: dict[str, float] | None = None
    loaded: bool
    error: ErrorBody | None = Field(default=None, description="why the store cannot describe this model")


class ModelList(BaseModel):
    models: list[ModelSummary]


class ModelDetail(BaseModel):
    manifest: Manifest
    versions: list[int]
    aliases: dict[str, int]
    loaded: list[int] = Field(description="versions of this model in memory")
    pinned: bool


class AliasRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)


class AliasesResponse(BaseModel):
    model: str
    aliases: dict[str, int]


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str = "production"


class RollbackResponse(BaseModel):
    alias: str
    version: int


class PinResponse(BaseModel):
    model: str
    pinned: bool
    loaded: list[int]


class Health(BaseModel):
    status: str
    loaded_models: int | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "Bad request (malformed body, invalid name)",
        401: "Missing or invalid bearer token",
        403: "The token lacks the scope",
        404: "Unknown model, version or alias",
        413: "Body larger than the bridge's limit",
        422: "Batch does not match the model's signature",
        503: "Model failed to load, or the bridge is overloaded",
        504: "The model did not answer within the request timeout",
    }.items()
}


def batch_request_body(schema_name: str) -> dict[str, Any]:
    """OpenAPI `requestBody` for routes that take JSON or an Arrow IPC stream."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}},
                ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }


def arrow_response(description: str, model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": description,
            "model": model,
            "content": {ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}}},
        }
    }
