"""`sqlml sql rewrite` knows the models without `--dsn`: from the local store (or `--bridge`), by
the rules of `ml.sync()`, so a typed per-row call is batched as it would be on the database."""

from __future__ import annotations

from typer.testing import CliRunner

from sqlml.bridge.registry import Registry
from sqlml.cli import app

QUERY = "SELECT id, ml.adder(a, b, c) AS total FROM t"


def test_typed_calls_are_batched_from_the_local_stores_models(store: Registry) -> None:
    result = CliRunner().invoke(app, ["sql", "rewrite"], input=QUERY)
    assert result.exit_code == 0, result.output
    assert "ml.predict_batch('adder', x.__ml_batch)" in result.stdout
    assert "rewritten" in result.stderr


def test_without_models_a_typed_call_is_left_alone(home: object) -> None:
    result = CliRunner().invoke(app, ["sql", "rewrite"], input=QUERY)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == QUERY and "unchanged" in result.stderr
