"""Suite-wide settings: every test runs offline, with its own sqlml home, never the user's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True, scope="session")
def _session_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A private SQLML_HOME for the whole run, so no test reads or writes ~/.sqlml."""
    home = tmp_path_factory.mktemp("sqlml-home")
    os.environ["SQLML_HOME"] = str(home)
    os.environ.pop("SQLML_STORE", None)


# Fixtures that open a scratch database on the host's PostgreSQL.
POSTGRES_FIXTURES = frozenset({"standin_dsn", "standin", "pg_leads"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests that talk to the host's PostgreSQL are marked (by folder or by fixture), so that
    # `-m "not postgres"` can run the rest inside a network namespace with only loopback.
    for item in items:
        uses_postgres = POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if "postgres" in Path(str(item.fspath)).parts or uses_postgres:
            item.add_marker(pytest.mark.postgres)
