"""`sqlml query`, `sqlml models` and `sqlml demo` through typer's runner, with fake models."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from sqlml import demo, demo_data
from sqlml.bridge.registry import Registry
from sqlml.cli import app
from tests.cli import fake_trainers

runner = CliRunner()

NEGATIVE_SQL = "SELECT (ml.sentiment('Your product stinks and I''ll never buy from you again!')).label"


def test_query_csv_prints_the_sentiment_label(store: Registry) -> None:
    result = runner.invoke(app, ["query", "--format", "csv", NEGATIVE_SQL])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "negative" and len(lines) == 2


def test_query_csv_writes_nested_values_as_json(store: Registry) -> None:
    result = runner.invoke(app, ["query", "-f", "csv", "SELECT 1 AS n, ml.sentiment('great') AS s, NULL AS x"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["n", "s", "x"]
    assert rows[1][0] == "1" and json.loads(rows[1][1]) == {"label": "positive", "confidence": 0.8}
    assert rows[1][2] == ""


def test_query_json(store: Registry) -> None:
    result = runner.invoke(app, ["query", "--format", "json", "SELECT ml.adder(i, 0.5, 0) AS total FROM range(3) t(i)"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"total": 0.5}, {"total": 1.5}, {"total": 2.5}]


def test_query_table(store: Registry) -> None:
    result = runner.invoke(app, ["query", "SELECT name, task FROM ml.models() ORDER BY name"])
    assert result.exit_code == 0, result.output
    assert "sentiment" in result.stdout and "regression" in result.stdout and "4 rows" in result.stdout


def test_query_uses_the_given_database_file(store: Registry, tmp_path: Path) -> None:
    db = tmp_path / "mine.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE reviews AS SELECT * FROM (VALUES (1, 'awful'), (2, 'great')) v(id, body)")
    result = runner.invoke(
        app, ["query", "--db", str(db), "-f", "csv", "SELECT id, (ml.sentiment(body)).label FROM reviews ORDER BY id"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == ["1,negative", "2,positive"]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT ml.predict('lead_scor', {'a': 1})",
            'error [model_not_found]: model "lead_scor" not found',
        ),
        ("SELECT ml.adder('x', 1.0, 1)", "must be BIGINT, got VARCHAR"),
        ("SELECT nope", "error [binder_error]:"),
    ],
)
def test_query_errors_are_one_line_with_exit_code_1(store: Registry, sql: str, expected: str) -> None:
    result = runner.invoke(app, ["query", sql])
    assert result.exit_code == 1
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_unknown_model_error_carries_the_hint(store: Registry) -> None:
    result = runner.invoke(app, ["query", "SELECT ml.predict('addr', {'a': 1})"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error [model_not_found]: model \"addr\" not found (hint: did you mean 'adder'?)"


def test_unknown_format_is_refused(store: Registry) -> None:
    result = runner.invoke(app, ["query", "--format", "xml", "SELECT 1"])
    assert result.exit_code == 1 and "unknown format 'xml'" in result.stderr


def test_models_lists_name_version_aliases_task_metrics(store: Registry) -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for text in ("adder", "sentiment", "production→1", "regression", "auc=0.9"):
        assert text in result.stdout


def test_models_on_an_empty_store_says_what_to_do(home: Path) -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0 and "sqlml demo" in result.stdout


# -- the demo, end to end with small tables and fake trainers -------------------------------------


def small_frames() -> dict[str, pd.DataFrame]:
    reviews = pd.DataFrame(
        {
            "review_id": range(1, 7),
            "product": ["p1", "p1", "p1", "p2", "p2", "p2"],
            "body": ["great", "awful", "meh", "love it", "great", "bad"],
            "split": ["train"] * 6,
            "great": [True, False, False, True, True, False],
        }
    )
    leads = pd.DataFrame({"lead_id": range(1, 31), "purchased": [False] * 30})
    for i, name in enumerate(fake_trainers.LEAD_FEATURES):
        leads[name] = [(row * (i + 1)) % 7 for row in range(30)]
    start = datetime(2010, 11, 1)
    hours = [start + timedelta(hours=h) for h in range(26 * 24)]
    power = pd.DataFrame(
        {"ts": hours, "series": "global_active_power", "value": [1.0 + (h % 24) / 10 for h in range(len(hours))]}
    )
    return {"reviews": reviews, "leads": leads, "power": power}


def test_demo_builds_trains_queries_and_plots(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = small_frames()
    monkeypatch.setattr(demo_data, "LOADERS", {name: (lambda f=frame: f) for name, frame in frames.items()})
    monkeypatch.setattr(demo, "TRAINERS", fake_trainers.TRAINERS)
    result = runner.invoke(app, ["demo"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    output = result.stdout
    assert "training lead_score" in output
    assert "ml.sentiment(body)" in output and "ml.explain('lead_score', b, 3)" in output  # the SQL is shown
    assert "p1" in output and "mgemomv=" in output
    chart = home / "forecast.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(chart) in output.replace("\n", "")
    # a second run reuses the database and the models
    again = runner.invoke(app, ["demo"], env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert "training" not in again.stdout and "loading" not in again.stdout


def test_query_and_models_through_a_bridge_client(store: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--bridge URL --token T` builds a BridgeClient; a local stand-in records how it was built."""
    import sqlml.bridge.http_client as http_client
    from sqlml.bridge.client import LocalClient

    built: list[tuple[str, str | None]] = []

    class StandIn(LocalClient):
        def __init__(self, url: str, token: str | None = None, timeout: float = 10.0):
            built.append((url, token))
            super().__init__(store)

    monkeypatch.setattr(http_client, "BridgeClient", StandIn)
    args = ["--bridge", "http://bridge:8000", "--token", "s3cret"]
    result = runner.invoke(app, ["query", *args, "-f", "csv", NEGATIVE_SQL])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "negative"
    assert runner.invoke(app, ["models", *args]).exit_code == 0
    assert built == [("http://bridge:8000", "s3cret")] * 2
