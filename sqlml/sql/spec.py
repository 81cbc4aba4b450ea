"""One function spec per model: what `ml.<model>(...)` is, on every SQL surface.

`spec_from_entry` reads a model as the bridge lists it (a `GET /v1/models` entry: name, task,
version, signature) and decides, once, whether the model gets a function of its own and with which
arguments and outputs. Three renderers read the spec and nothing else:

- the PostgreSQL helper's `ml.sync()` (extension/helper/sync.py): `ml.<model>(a bigint, ...)` and
  the row form `ml.<model>(record)`;
- the DuckDB registration (udfs/macros.py): the macro `ml.<model>(a, ...)` and `ml.<model>(row)`,
  or a table macro for a forecast model;
- the batching rewriter's catalogue (sqlml/sql/catalog.py): which calls it may batch.

Standard library only: the PostgreSQL helper is built with this very module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlml.naming import NAME
from sqlml.sql.reserved import BUILTIN_MODEL_FUNCTIONS, RESERVED_FUNCTIONS
from sqlml.sql.types import DUCKDB_TYPES, POSTGRES_TYPES, SIGNATURE_TYPES

# A signature column becomes a SQL argument or result field by this name: a plain identifier,
# so that generated SQL needs no quoting rules beyond the standard ones.
COLUMN_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")
TABLE_TASKS = frozenset({"forecast"})
# The arguments of a forecast after the model, in order, on both engines: PostgreSQL's
# ml.forecast(model, ...), DuckDB's ml.forecast(model, ...) and its per-model table macros.
FORECAST_ARGUMENTS = ("series", "horizon", "quantiles", "future", "history")


@dataclass(frozen=True)
class SpecColumn:
    """One argument or output: its name and its signature type (`text`, `double`, ...)."""

    name: str
    type: str
    nullable: bool = False  # an input the model takes as missing when NULL

    @property
    def postgres_type(self) -> str:
        return POSTGRES_TYPES[self.type]

    @property
    def duckdb_type(self) -> str:
        return DUCKDB_TYPES[self.type]


@dataclass(frozen=True)
class FunctionSpec:
    """`ml.<model>`: a scalar function of the inputs, or (a forecast model) a table of quantiles."""

    model: str
    task: str
    inputs: tuple[SpecColumn, ...]
    outputs: tuple[SpecColumn, ...]
    version: Any = None
    description: str = ""

    @property
    def is_table(self) -> bool:
        """A forecast model: DuckDB has a table macro; PostgreSQL and the rewriter use ml.forecast()."""
        return self.task in TABLE_TASKS

    @property
    def generated_on_postgres(self) -> bool:
        """Whether ml.sync() creates `ml.<model>(...)` in PostgreSQL: not for a forecast (served by
        ml.forecast()) nor for a model the extension defines a function for itself (ml.sentiment)."""
        return not self.is_table and self.model not in BUILTIN_MODEL_FUNCTIONS

    @property
    def strict(self) -> bool:
        """NULL in any input gives NULL without scoring (SQL's STRICT); False when the model takes
        NULL inputs as missing values (tabular models), so the functions must pass NULLs on."""
        return not any(c.nullable for c in self.inputs)

    @property
    def input_names(self) -> list[str]:
        return [c.name for c in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [c.name for c in self.outputs]

    @property
    def single_output(self) -> SpecColumn | None:
        """The output a scalar function returns; None when it returns a record of several."""
        return self.outputs[0] if len(self.outputs) == 1 else None


def function_spec(
    model: object,
    task: object,
    inputs: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]],
    version: Any = None,
    description: object = "",
) -> FunctionSpec | None:
    """The spec of one model, or None when it gets no function of its own: a name that is not a
    model name or that schema ml already uses, or a signature with no inputs or outputs, a column
    name that is not an identifier or a type no engine maps."""
    if not isinstance(model, str) or NAME.match(model) is None or model in RESERVED_FUNCTIONS:
        return None
    task_name = str(task or "")
    if task_name in TABLE_TASKS:
        return FunctionSpec(model, task_name, (), (), version, str(description or "").strip())
    columns = []
    for column in [*inputs, *outputs]:
        name, kind = column.get("name"), column.get("type")
        if not isinstance(name, str) or COLUMN_NAME.match(name) is None or kind not in SIGNATURE_TYPES:
            return None
        columns.append(SpecColumn(name, str(kind), bool(column.get("nullable", False))))
    if not inputs or not outputs:
        return None
    return FunctionSpec(
        model,
        task_name,
        tuple(columns[: len(inputs)]),
        tuple(columns[len(inputs) :]),
        version,
        str(description or "").strip(),
    )


def spec_from_entry(entry: Mapping[str, Any]) -> FunctionSpec | None:
    """The spec of a `GET /v1/models` entry; None also for an entry the bridge could not read."""
    if entry.get("error"):
        return None
    signature = entry.get("signature") or {}
    if not isinstance(signature, Mapping):
        return None
    inputs, outputs = signature.get("inputs") or [], signature.get("outputs") or []
    if not all(isinstance(c, Mapping) for c in [*inputs, *outputs]):
        return None
    return function_spec(
        entry.get("name"), entry.get("task"), inputs, outputs, entry.get("version"), entry.get("description")
    )
