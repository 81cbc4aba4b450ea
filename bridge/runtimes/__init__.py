"""Runtimes, one module per model family, found by the `runtime` name in a manifest."""

from __future__ import annotations

import importlib

from sqlml.bridge.runtimes.base import Runtime
from sqlml.errors import ModelLoadError

# runtime name -> "module:Class"; imported lazily so that DuckDB users who only score XGBoost
# models never import torch.
RUNTIMES: dict[str, str | type[Runtime]] = {
    "sentiment": "sqlml.bridge.runtimes.sentiment:SentimentRuntime",
    "xgboost": "sqlml.bridge.runtimes.xgboost_model:XGBoostRuntime",
    "forecast": "sqlml.bridge.runtimes.forecast:ForecastRuntime",
    # models trained elsewhere (`sqlml models import`); imported XGBoost models use "xgboost"
    "sklearn": "sqlml.bridge.runtimes.sklearn_model:SklearnRuntime",
    "text_classifier": "sqlml.bridge.runtimes.text_classifier:TextClassifierRuntime",
}


def runtime_class(name: str) -> type[Runtime]:
    if name not in RUNTIMES:
        raise ModelLoadError(f"unknown runtime {name!r}", hint=f"known runtimes: {', '.join(sorted(RUNTIMES))}")
    target = RUNTIMES[name]
    if not isinstance(target, str):
        return target
    module_name, _, class_name = target.partition(":")
    cls: type[Runtime] = getattr(importlib.import_module(module_name), class_name)
    return cls


def register_runtime(name: str, target: str | type[Runtime]) -> None:
    """Add a runtime (a class, or `"package.module:Class"` imported on first use), for plugins and fakes."""
    RUNTIMES[name] = target


__all__ = ["RUNTIMES", "Runtime", "register_runtime", "runtime_class"]
