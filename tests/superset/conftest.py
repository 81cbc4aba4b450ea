"""Fixtures for the Superset tests: Superset's own venv, and a running Superset site per session.

Superset's venv is built once by `ensure_venv` (idempotent: a digest of
`dashboards/requirements-superset.txt` marks it current). It needs the package registry, so CI
builds it before the offline part of the suite runs (`make superset-venv`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sqlml.commands.superset import dashboards_module
from tests.superset.stack import SUPERSET_VENV, free_port

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def provision() -> Any:
    return dashboards_module("provision")


@pytest.fixture(scope="session")
def superset_venv(provision: Any) -> Path:
    try:
        provision.ensure_venv(SUPERSET_VENV)
    except provision.ProvisionError as exc:
        pytest.fail(f"Superset's venv at {SUPERSET_VENV} is missing and could not be built: {exc}")
    return SUPERSET_VENV


def start_site(provision: Any, home: Path, rewrite_command: str = "") -> Any:
    site = provision.SupersetSite(home=home, venv=SUPERSET_VENV, port=free_port(), rewrite_command=rewrite_command)
    provision.init_metadata(site)
    provision.start(site)
    return site


@pytest.fixture(scope="session")
def offline_superset(provision: Any, superset_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Superset with the assets imported; its databases are never queried (no PostgreSQL needed)."""
    site = start_site(provision, tmp_path_factory.mktemp("superset-offline"))
    try:
        provision.import_assets(site, {})
        yield site
    finally:
        provision.stop(site)
