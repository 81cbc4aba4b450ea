"""Where sqlml keeps its files, and the settings every component reads from the environment.

`SQLML_HOME` (default `~/.sqlml`) holds the data cache (`data/`), the model store (`models/`) and
the demo database (`demo.duckdb`). `SQLML_STORE` points the model store elsewhere (a path or any
fsspec URL such as `s3://bucket/models`).
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The sqlml home folder, created on first use."""
    path = Path(os.environ.get("SQLML_HOME", Path.home() / ".sqlml")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    path = home() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_url() -> str:
    """The model store: `SQLML_STORE` if set, else `$SQLML_HOME/models`."""
    return os.environ.get("SQLML_STORE") or str(home() / "models")


def demo_db_path() -> Path:
    return home() / "demo.duckdb"
