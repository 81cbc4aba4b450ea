"""How a tabular model turns a user's columns into XGBoost's matrix: the feature plan.

A plan is decided once, at training, from the training rows (`sqlml.bridge.training.tabular`),
stored with the version (`features.json` in its artifact) and applied unchanged by the `xgboost`
runtime, so training and serving cannot encode a column differently. Each input column is one of:

- `number` and `boolean`: one matrix column, the value as a float;
- `category` (a text column): one categorical matrix column (XGBoost's native categorical
  support), the index of the value in the categories seen at training. A value that training
  never saw is a missing value, and counted (`unseen` of `matrix()`): a new product name must
  not fail a query that scores ten million rows;
- `datetime` (a date or timestamp): its calendar parts, one matrix column each (`<name>__year`,
  `__month`, `__day`, `__weekday`, `__yearday`, `__hour`), in UTC for a timestamp with a time
  zone (the signature's `timestamp` carries none, so serving sees UTC too).

NULL is a missing value everywhere (NaN in the matrix): XGBoost learns where missing values go,
so a row with an unknown field still gets a score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlml.bridge.manifest import Column, ColumnType
from sqlml.errors import ModelLoadError

PLAN_FILE = "features.json"
FeatureKind = Literal["number", "boolean", "category", "datetime"]
TabularTask = Literal["classification", "regression"]
DATE_PARTS = ("year", "month", "day", "weekday", "yearday", "hour")
SIGNATURE_TYPES: dict[FeatureKind, ColumnType] = {
    "number": "double",
    "boolean": "boolean",
    "category": "text",
    "datetime": "timestamp",
}

Matrix = np.ndarray[Any, np.dtype[np.float32]]


@dataclass(frozen=True)
class Feature:
    name: str
    kind: FeatureKind
    categories: tuple[str, ...] = ()
    integer: bool = False  # a number column that was integral at training (typed as bigint)

    @property
    def signature_type(self) -> ColumnType:
        return "bigint" if self.kind == "number" and self.integer else SIGNATURE_TYPES[self.kind]

    @property
    def matrix_names(self) -> list[str]:
        if self.kind == "datetime":
            return [f"{self.name}__{part}" for part in DATE_PARTS]  # "__": no feature name has it
        return [self.name]

    @property
    def matrix_types(self) -> list[str]:
        """XGBoost's feature types: `c` categorical, `q` quantitative."""
        return ["c"] if self.kind == "category" else ["q"] * len(self.matrix_names)


@dataclass(frozen=True)
class FeaturePlan:
    features: tuple[Feature, ...]
    task: TabularTask
    classes: tuple[str, ...] = ()  # classification: the labels, in the booster's class order
    positive: str | None = None  # binary classification on a text target: the class `probability` is of
    target: str = ""
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why it is not a feature

    @property
    def matrix_names(self) -> list[str]:
        return [name for f in self.features for name in f.matrix_names]

    @property
    def matrix_types(self) -> list[str]:
        return [kind for f in self.features for kind in f.matrix_types]

    @property
    def has_categories(self) -> bool:
        return any(f.kind == "category" for f in self.features)

    def signature_inputs(self) -> list[Column]:
        return [Column(name=f.name, type=f.signature_type, nullable=True) for f in self.features]

    def matrix(self, table: pa.Table) -> tuple[Matrix, dict[str, int]]:
        """The float32 matrix of `table`'s input columns, and per categorical feature the number
        of non-NULL values that training never saw (scored as missing)."""
        rows = table.num_rows
        out = np.empty((rows, len(self.matrix_names)), dtype=np.float32)
        unseen: dict[str, int] = {}
        position = 0
        for feature in self.features:
            column = table.column(feature.name)
            if feature.kind == "category":
                codes = pc.index_in(column.cast(pa.string()), value_set=pa.array(feature.categories, pa.string()))
                missed = int(pc.sum(pc.and_(pc.is_null(codes), pc.is_valid(column))).as_py() or 0)
                if missed:
                    unseen[feature.name] = missed
                out[:, position] = _floats(codes)
                position += 1
            elif feature.kind == "datetime":
                stamps = column.cast(pa.timestamp("us"))  # a zone's values are UTC instants: parts in UTC
                for part in DATE_PARTS:
                    out[:, position] = _floats(_date_part(stamps, part))
                    position += 1
            else:
                out[:, position] = _floats(column)
                position += 1
        return out, unseen

    def to_json(self) -> str:
        return json.dumps(
            {
                "task": self.task,
                "target": self.target,
                "classes": list(self.classes),
                "positive": self.positive,
                "features": [
                    {"name": f.name, "kind": f.kind, "categories": list(f.categories), "integer": f.integer}
                    for f in self.features
                ],
                "dropped": self.dropped,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> FeaturePlan:
        data = json.loads(text)
        return cls(
            features=tuple(
                Feature(f["name"], f["kind"], tuple(f.get("categories") or ()), bool(f.get("integer")))
                for f in data["features"]
            ),
            task=data["task"],
            classes=tuple(data.get("classes") or ()),
            positive=data.get("positive"),
            target=str(data.get("target") or ""),
            dropped=dict(data.get("dropped") or {}),
        )

    @classmethod
    def load(cls, folder: Path, model: str, inputs: list[str]) -> FeaturePlan | None:
        """The plan stored in an artifact, checked against the signature's `inputs`; None for an
        artifact from before plans (all numeric)."""
        path = folder / PLAN_FILE
        if not path.is_file():
            return None
        try:
            plan = cls.from_json(path.read_text())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelLoadError(f'model "{model}": its {PLAN_FILE} is unreadable ({exc})') from None
        if [f.name for f in plan.features] != inputs or plan.task not in ("classification", "regression"):
            raise ModelLoadError(f'model "{model}": its {PLAN_FILE} does not match its signature')
        return plan


def numeric_plan(names: list[str], types: list[ColumnType], task: TabularTask = "classification") -> FeaturePlan:
    """The plan of an artifact from before plans: every input a number (or boolean) column."""
    return FeaturePlan(
        tuple(
            Feature(n, "boolean" if t == "boolean" else "number", integer=t == "bigint")
            for n, t in zip(names, types, strict=True)
        ),
        task,
    )


def _floats(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A float64 numpy array with NaN for NULL (booleans as 0/1)."""
    if pa.types.is_boolean(values.type):
        values = values.cast(pa.int8())
    return np.asarray(values.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _date_part(stamps: pa.ChunkedArray, part: str) -> pa.ChunkedArray:
    if part == "year":
        return pc.year(stamps)
    if part == "month":
        return pc.month(stamps)
    if part == "day":
        return pc.day(stamps)
    if part == "weekday":
        return pc.day_of_week(stamps)
    if part == "yearday":
        return pc.day_of_year(stamps)
    return pc.hour(stamps)
