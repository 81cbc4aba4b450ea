"""A model trained elsewhere, scored from PostgreSQL: a scikit-learn Pipeline imported through the test
bridge with `sqlml models import --bridge`, given its typed function by `ml.sync()`, and called
with a text and a number argument, per row and in the row form."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from sqlml.cli import app
from tests import imported_models as made
from tests.postgres.conftest import ADMIN_TOKEN

pytestmark = [pytest.mark.postgres, pytest.mark.bridge]


def test_an_imported_pipeline_gets_a_typed_function_after_sync(
    conn: psycopg.Connection, bridge_url: str, tmp_path: Path
) -> None:
    name = f"upgrade_{uuid.uuid4().hex[:6]}"
    result = CliRunner().invoke(
        app,
        ["models", "import", name, str(made.sklearn_pipeline(tmp_path)), "--bridge", bridge_url, "--token", ADMIN_TOKEN,
         "--description", "Will the customer upgrade? (scikit-learn, imported)"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    conn.execute("SELECT * FROM ml.sync()")
    arguments, comment = conn.execute(
        "SELECT pg_get_function_identity_arguments(p.oid), obj_description(p.oid, 'pg_proc') FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname = 'ml' "
        "WHERE p.proname = %s AND p.proargtypes[0] <> 'record'::regtype",
        [name],
    ).fetchone()  # type: ignore[misc]
    assert arguments == "age double precision, plan text"
    assert "Will the customer upgrade?" in comment
    label, probability = conn.execute(f"SELECT (ml.{name}(30.0, 'max')).*").fetchone()  # type: ignore[misc]
    assert label == "yes" and probability > 0.5
    conn.execute(f"CREATE TEMP TABLE {name}_customers AS SELECT * FROM (VALUES (1, 20.0, 'max'), (2, 40.0, 'basic'),"
                 " (3, 50.0, NULL)) AS t(id, age, plan)")  # fmt: skip
    rows = conn.execute(f"SELECT id, (ml.{name}(c)).label FROM {name}_customers c ORDER BY id").fetchall()
    assert rows == [(1, "yes"), (2, "no"), (3, None)]  # a NULL input: NULL out (the model has no missing values)
