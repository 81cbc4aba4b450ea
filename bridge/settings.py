"""Settings of the bridge service, from defaults < config file < environment < command line.

Environment variables (all optional): `SQLML_STORE`, `SQLML_HOST`, `SQLML_PORT`,
`SQLML_MEMORY_BUDGET` (`2GB`, `512MiB`, bytes), `SQLML_AUTH` (`on`/`off`), `SQLML_TOKENS` (a JSON
object token -> list of scopes), `SQLML_TOKENS_FILE` (the same JSON in a file),
`SQLML_BATCHING` (`on`/`off`), `SQLML_MAX_BATCH_SIZE`, `SQLML_MAX_WAIT_MS`,
`SQLML_REQUEST_TIMEOUT_S`, `SQLML_LOAD_TIMEOUT_S`, `SQLML_MAX_BODY_BYTES`,
`SQLML_MAX_REQUEST_ROWS`, `SQLML_MAX_PENDING_PER_MODEL`,
`SQLML_PLUGINS` (comma-separated modules imported at startup, e.g. to register runtimes),
`SQLML_PRELOAD` (comma-separated models, or `*`, loaded in the background at startup),
`SQLML_MODEL_PROCESSES` (comma-separated runtime names, or `*`, whose models run in processes of
their own),
`SQLML_JOBS_DB` (the training job store, SQLite), `SQLML_TRAIN_ROOTS` (comma-separated folders
whose DuckDB files training jobs may read; default `$SQLML_HOME`), `SQLML_MAX_UPLOAD_BYTES` (the
most Arrow data one training upload may hold, default 1 GiB) and
`SQLML_BRIDGE_CONFIG` (a JSON or YAML file holding any of the fields below).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sqlml import config
from sqlml.errors import BadRequest

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(text: str | int | None) -> int | None:
    """`"2GB"` -> 2_000_000_000, `"512MiB"` -> 536_870_912, `None`/`""`/`"none"` -> no limit."""
    if text is None or isinstance(text, int):
        return text
    if text.strip().lower() in ("", "none", "unlimited"):
        return None
    match = _SIZE.match(text)
    if not match:
        raise BadRequest(f"invalid size {text!r}", hint="use a number of bytes or a size like 512MB, 2GiB")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    binary = "i" in unit
    prefix = unit[:1] if unit[:1] in "kmgt" else ""
    factor = 1024 ** "kmgt".index(prefix) * 1024 if binary and prefix else _UNITS[prefix]
    return int(number * factor)


def default_train_roots() -> list[str]:
    """The folders training jobs may read DuckDB files from when none are set: the sqlml home."""
    return [str(config.home())]


def _flag(text: str) -> bool:
    return text.strip().lower() not in ("0", "off", "false", "no", "")


class BridgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str = Field(default_factory=config.store_url, description="model store: a path or fsspec URL")
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    memory_budget: int | None = Field(default=None, description="bytes of loaded models before LRU eviction")
    auth: bool = True
    tokens: dict[str, list[str]] = Field(default_factory=dict, description="bearer token -> scopes")
    batching: bool = True
    max_batch_size: int | None = Field(default=None, ge=1, description="overrides every manifest's value")
    max_wait_ms: float | None = Field(default=None, ge=0, description="overrides every manifest's value")
    request_timeout_s: float = Field(default=30.0, gt=0)
    load_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="how long a call waits for its model to load before 503 'still loading' (the load goes on)",
    )
    preload: list[str] = Field(
        default_factory=list,
        description='models (production versions, or "*" for all) loaded in the background at startup',
    )
    pin: list[str] = Field(
        default_factory=list,
        description="models never evicted under memory_budget; they are preloaded at startup too",
    )
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_request_rows: int = Field(
        # 10x the PostgreSQL helper's default chunk (sqlml.batch_size) and ~50 DuckDB vectors, so no
        # default client path meets it; a fast model (XGBoost) scores it in well under a second, and
        # slower ones are bounded by request_timeout_s anyway.
        default=100_000,
        ge=1,
        description="rows one predict or explain request may hold (413 above)",
    )
    max_pending_per_model: int = Field(
        default=4096,
        ge=1,
        description="requests waiting per model version (predict, and explain / forecast) before 503",
    )
    plugins: list[str] = Field(default_factory=list)
    model_processes: list[str] = Field(
        default_factory=list,
        description='runtimes (e.g. "sentiment", or "*" for all) whose models each run in a process of their own',
    )
    jobs_db: str | None = Field(default=None, description="training job store (SQLite); default $SQLML_HOME/jobs")
    train_roots: list[str] = Field(
        default_factory=default_train_roots,
        min_length=1,
        description="folders whose DuckDB files (after resolving symlinks) training jobs may read",
    )
    max_upload_bytes: int = Field(default=1024**3, ge=1, description="Arrow bytes one training upload may hold")

    @field_validator("plugins", "model_processes", "train_roots", "preload", "pin", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        """A comma-separated string (the environment, the command line) is a list of names."""
        return [name.strip() for name in value.split(",") if name.strip()] if isinstance(value, str) else value

    @field_validator("memory_budget", "max_upload_bytes", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int | None:
        return parse_size(value)

    @classmethod
    def load(
        cls,
        config_file: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> BridgeSettings:
        """Merge the config file, the environment and explicit overrides (None means "not given")."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        config_file = config_file or env.get("SQLML_BRIDGE_CONFIG")
        if config_file:
            values.update(_read_config_file(Path(config_file)))
        values.update(_from_env(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise BadRequest(
                f"invalid bridge settings: {exc.errors()[0]['msg']}", detail={"errors": str(exc)}
            ) from None


def _read_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise BadRequest(f"bridge config file {path} must hold a mapping")
    return data


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    simple = {
        "SQLML_STORE": "store",
        "SQLML_HOST": "host",
        "SQLML_PORT": "port",
        "SQLML_MEMORY_BUDGET": "memory_budget",
        "SQLML_MAX_BATCH_SIZE": "max_batch_size",
        "SQLML_MAX_WAIT_MS": "max_wait_ms",
        "SQLML_REQUEST_TIMEOUT_S": "request_timeout_s",
        "SQLML_LOAD_TIMEOUT_S": "load_timeout_s",
        "SQLML_MAX_BODY_BYTES": "max_body_bytes",
        "SQLML_MAX_REQUEST_ROWS": "max_request_rows",
        "SQLML_MAX_PENDING_PER_MODEL": "max_pending_per_model",
        "SQLML_JOBS_DB": "jobs_db",
        "SQLML_MAX_UPLOAD_BYTES": "max_upload_bytes",
        "SQLML_PLUGINS": "plugins",  # comma-separated, as are the rest below: BridgeSettings._names splits them
        "SQLML_MODEL_PROCESSES": "model_processes",
        "SQLML_TRAIN_ROOTS": "train_roots",
        "SQLML_PRELOAD": "preload",
        "SQLML_PIN": "pin",
    }
    for var, field in simple.items():
        if env.get(var):
            out[field] = env[var]
    if "SQLML_AUTH" in env:
        out["auth"] = _flag(env["SQLML_AUTH"])
    if "SQLML_BATCHING" in env:
        out["batching"] = _flag(env["SQLML_BATCHING"])
    tokens: dict[str, list[str]] = {}
    if env.get("SQLML_TOKENS_FILE"):
        tokens.update(json.loads(Path(env["SQLML_TOKENS_FILE"]).read_text()))
    if env.get("SQLML_TOKENS"):
        tokens.update(json.loads(env["SQLML_TOKENS"]))
    if tokens:
        out["tokens"] = tokens
    return out
