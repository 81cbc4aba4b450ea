"""Model manifests: the validated file that describes one immutable model version.

A manifest names the runtime that loads the artifact, the task, the signature of inputs and
outputs (from which the SQL functions of every engine are generated), the metrics measured on
held-out data, the lineage of the training data, and per-model serving settings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sqlml.errors import InvalidName
from sqlml.naming import NAME, NAME_HINT, RESERVED_ALIASES

# Kept as an alias so older imports see the one shared rule rather than a copy of it.
NAME_PATTERN = NAME

# Column types a signature may use; each engine maps them to its own SQL types.
ColumnType = Literal["text", "double", "bigint", "boolean", "timestamp"]
Task = Literal["sentiment", "classification", "regression", "forecast"]


def check_name(name: str, what: str = "model name") -> str:
    """Model and feature names are identifiers: this keeps them safe in paths and SQL alike."""
    if not isinstance(name, str) or NAME.match(name) is None:
        raise InvalidName(f"invalid {what} {name!r}", hint=NAME_HINT)
    return name


def check_alias(alias: str) -> str:
    """An alias is a name that a reference does not already resolve by itself (`latest`)."""
    check_name(alias, "alias")
    if alias in RESERVED_ALIASES:
        raise InvalidName(
            f"alias {alias!r} is reserved",
            hint=f"{alias!r} always means the newest version; choose another alias name",
        )
    return alias


class Column(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    type: ColumnType
    description: str = ""
    # An input the model takes as a missing value when it is NULL (a tabular model's features).
    # By default NULL in any input gives NULL outputs without calling the model (as SQL's STRICT).
    nullable: bool = False


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Column]
    outputs: list[Column]

    def input_names(self) -> list[str]:
        return [c.name for c in self.inputs]

    def output_names(self) -> list[str]:
        return [c.name for c in self.outputs]


class Batching(BaseModel):
    """Dynamic batching settings the bridge applies to this model."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(default=64, ge=1, le=100_000)
    max_wait_ms: float = Field(default=2.0, ge=0.0, le=10_000.0)


class Manifest(BaseModel):
    """`manifest.json` of one model version."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    version: int = 0  # assigned by the registry when the version is published
    runtime: str
    task: Task
    description: str = ""
    signature: Signature
    metrics: dict[str, float] = Field(default_factory=dict)
    lineage: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    batching: Batching = Field(default_factory=Batching)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_name(value)
