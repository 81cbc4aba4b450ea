"""The training job spec: what to train, from which rows, with what resources, and when to promote.

A spec is what `POST /v1/jobs`, `sqlml train` and `ml.train(...)` all send. It is validated here
for shape (names, task, source, resources); the checks that need the data or the machine (the
query runs, the target column exists, rows come back, GPUs are there) happen in `runner.validate`
before any work starts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sqlml.bridge.manifest import check_alias, check_name
from sqlml.errors import BadRequest

TASKS = ("sentiment", "classification", "regression", "forecast")
# Synonyms: lead scoring is binary classification under the name the demo uses.
TASK_ALIASES = {"lead_scoring": "classification", "lead_score": "classification", "leads": "classification"}
TABULAR_TASKS = frozenset({"classification", "regression"})

# The metric `if_better` compares when the spec names none, and whether higher is better.
DEFAULT_METRIC = {"classification": "auc", "regression": "rmse", "sentiment": "auc", "forecast": "pinball_loss"}
LOWER_IS_BETTER = frozenset({"logloss", "pinball_loss", "mae", "rmse", "mse", "loss", "final_train_loss"})


def canonical_task(task: str) -> str:
    """`lead_scoring` -> `classification`; unknown tasks raise a BadRequest naming the known ones."""
    name = TASK_ALIASES.get(str(task).strip().lower(), str(task).strip().lower())
    if name not in TASKS:
        raise BadRequest(
            f"unknown task {task!r}",
            hint=f"known tasks: {', '.join(TASKS)} (lead_scoring is classification)",
            detail={"task": task, "known": list(TASKS)},
        )
    return name


SOURCE_KINDS = ("dsn", "duckdb", "upload")
UPLOAD_ID_PATTERN = r"^[0-9a-f]{32}$"


class Source(BaseModel):
    """Where the rows come from: exactly one of `dsn`, `duckdb` or `upload`, plus the query.

    `dsn` is a PostgreSQL connection string with the client's own credentials (never a superuser);
    `duckdb` is a DuckDB file under the bridge's `train_roots`, opened read-only with no file or
    network access; `upload` is the id of rows the client sent to `POST /v1/uploads` (what
    `ml.train` does), and `query` is then only recorded, for lineage. `origin` is the client's
    description of where the rows came from, also for lineage.
    """

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=100_000)
    dsn: str | None = None
    duckdb: str | None = None
    upload: str | None = Field(default=None, pattern=UPLOAD_ID_PATTERN)
    origin: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _one_place(self) -> Source:
        given = [k for k in SOURCE_KINDS if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of dsn (PostgreSQL), duckdb (a file) or upload (an upload id)")
        return self

    @property
    def kind(self) -> Literal["postgres", "duckdb", "upload"]:
        if self.duckdb:
            return "duckdb"
        return "upload" if self.upload else "postgres"

    def describe(self) -> str:
        """Where the data came from, without credentials (for lineage and listings)."""
        if self.duckdb:
            return f"duckdb:{self.duckdb}"
        if self.upload:
            return self.origin or "rows uploaded by the client"  # never the id: it is the upload's key
        return f"postgres {_strip_password(self.dsn or '')}"


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workers: int = Field(default=1, ge=1, le=1024)
    cpus_per_worker: float = Field(default=1.0, gt=0, le=512)
    gpus: int = Field(default=0, ge=0, le=1024, description="GPUs in all (Ray: one per worker when > 0)")


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str
    task: str
    source: Source
    target: str
    features: list[str] | None = Field(default=None, description="default: every column but the target")
    params: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    backend: Literal["local", "ray"] = "local"
    promote: Literal["never", "always", "if_better"] = "if_better"
    metric: str | None = Field(default=None, description="what if_better compares (default per task)")
    alias: str = "production"

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("alias")
    @classmethod
    def _alias_name(cls, value: str) -> str:
        return check_alias(value)

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        return canonical_task(value)

    @field_validator("target")
    @classmethod
    def _target_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("target must name a column")
        return value

    def promotion_metric(self) -> str:
        return self.metric or DEFAULT_METRIC[self.task]


def parse_spec(payload: dict[str, Any] | str) -> JobSpec:
    """A JobSpec from JSON or a dict; shape errors become one BadRequest naming the field.

    Name and task checks raise their own BadRequest subclasses, which pydantic lets through.
    """
    from pydantic import ValidationError

    try:
        if isinstance(payload, str):
            return JobSpec.model_validate_json(payload)
        return JobSpec.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise BadRequest(f"invalid job spec: {where}: {first['msg']}", detail={"field": where}) from None


def is_better(metric: str, candidate: float, incumbent: float) -> bool:
    return candidate < incumbent if metric in LOWER_IS_BETTER else candidate > incumbent


def _strip_password(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return "(unparsable dsn)"
    parts.pop("password", None)
    return make_conninfo("", **{k: v for k, v in parts.items() if v is not None})
