"""SQL Lab batches per-row ml.* calls: 1,000 rows of `ml.sentiment(body)` reach the bridge as a few requests.

SQL Lab hands each statement straight to the database cursor; `superset_config.py` gives Superset's
PostgreSQL connections a cursor that runs every statement through sqlml's rewriter on the way in.
The bridge's own counters (`/metrics`) say how many requests and rows reached it. The query runs
once in the SQL Lab UI (headless Chromium, tests/superset/sqllab_check.py) and once, as a
two-statement script, through SQL Lab's HTTP API.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from tests.superset.postgres.conftest import TEST_DATABASE, Stack
from tests.superset.stack import REPO, SUPERSET_VENV

pytestmark = [pytest.mark.bridge, pytest.mark.timeout(1200)]  # the first test may pay for the whole stack

PER_ROW = "SELECT review_id, (ml.sentiment(body)).label AS sentiment FROM public.reviews"
QUERY = f"{PER_ROW} WHERE review_id <= 1000 ORDER BY review_id"
ROWS = 1000
# Per row, 1,000 rows are 1,000 requests; batched, one request per chunk (sqlml.batch_size, sized as it goes).
MOST_BATCHED_REQUESTS = 16
ADMIN_DSN = f"host=127.0.0.1 user=postgres dbname={TEST_DATABASE}"


@dataclass
class BridgeCount:
    requests: float
    rows: float


def sentiment_counts(bridge_url: str) -> BridgeCount:
    text = httpx.get(f"{bridge_url}/metrics", timeout=10).text

    def total(metric: str) -> float:
        found = re.findall(rf'^{metric}\{{[^}}]*model="sentiment"[^}}]*\}} (\S+)$', text, re.M)
        return sum(float(value) for value in found)

    return BridgeCount(requests=total("sqlml_requests_total"), rows=total("sqlml_rows_total"))


def counted(bridge_url: str, before: BridgeCount) -> BridgeCount:
    after = sentiment_counts(bridge_url)
    return BridgeCount(requests=after.requests - before.requests, rows=after.rows - before.rows)


def bodies(where: str) -> dict[int, str]:
    with psycopg.connect(ADMIN_DSN) as conn:
        return dict(conn.execute(f"SELECT review_id, body FROM public.reviews WHERE {where}").fetchall())


def model_labels(bridge_url: str, texts: list[str]) -> dict[str, str]:
    """What the model says about each text, asked directly (one request, after the counting)."""
    distinct = sorted(set(texts))
    answer = httpx.post(
        f"{bridge_url}/v1/models/sentiment/predict", json={"columns": {"text": distinct}}, timeout=300
    ).raise_for_status()
    return dict(zip(distinct, answer.json()["columns"]["label"], strict=True))


def postgres_database_id(provision: Any, stack: Stack) -> int:
    with provision.api_session(stack.site) as client:
        databases = client.get("/api/v1/database/").raise_for_status().json()["result"]
    return int(next(db["id"] for db in databases if db["database_name"] == provision.POSTGRES_DATABASE_NAME))


@dataclass
class SqlLabRun:
    report: dict[str, Any]
    bridge: BridgeCount


@pytest.fixture(scope="module")
def sqllab_run(provision: Any, full_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> SqlLabRun:
    site = full_stack.site
    database_id = postgres_database_id(provision, full_stack)
    out_dir = tmp_path_factory.mktemp("sqllab")
    command = [str(SUPERSET_VENV / "bin/python"), str(REPO / "tests/superset/sqllab_check.py")]
    command += [site.url, site.admin_user, site.admin_password, str(database_id), QUERY, str(out_dir)]
    before = sentiment_counts(full_stack.bridge_url)
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    bridge = counted(full_stack.bridge_url, before)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return SqlLabRun(report=report, bridge=bridge)


def test_sqllab_ui_scores_1000_rows_in_a_few_batched_requests(sqllab_run: SqlLabRun, full_stack: Stack) -> None:
    answers = sqllab_run.report["answers"]
    assert [answer.get("status") for answer in answers] == ["success"], f"{answers} (log: {full_stack.site.log_file})"
    distinct_texts = len(set(bodies(f"review_id <= {ROWS}").values()))
    assert 1 <= sqllab_run.bridge.requests <= MOST_BATCHED_REQUESTS, sqllab_run.bridge
    assert sqllab_run.bridge.rows == distinct_texts  # every distinct text scored once (997 of the 1,000)
    assert "sqlml rewriter batched ml.* calls" in full_stack.site.log_file.read_text()


def test_sqllab_ui_shows_the_rows_of_the_query_as_written(sqllab_run: SqlLabRun, full_stack: Stack) -> None:
    rows = sqllab_run.report["answers"][-1]["data"]
    assert [row["review_id"] for row in rows] == list(range(1, ROWS + 1))
    # The query as written, run straight on PostgreSQL (no rewriter there, one request per row), over a sample.
    before = sentiment_counts(full_stack.bridge_url)
    with psycopg.connect(f"host=127.0.0.1 user=sqlml_superset dbname={TEST_DATABASE}") as conn:
        written: dict[int, str] = dict(
            conn.execute(f"{PER_ROW} WHERE review_id <= {ROWS} AND review_id % 50 = 0").fetchall()
        )
    assert counted(full_stack.bridge_url, before).requests == len(written) == ROWS // 50
    assert {row["review_id"]: row["sentiment"] for row in rows if row["review_id"] in written} == written
    # Every row carries the label of its own text (the batched answers are joined back right).
    texts = bodies(f"review_id <= {ROWS}")
    labels = model_labels(full_stack.bridge_url, list(texts.values()))
    assert {row["review_id"]: row["sentiment"] for row in rows} == {k: labels[text] for k, text in texts.items()}
    # And the grid draws those rows: the first screenful, cell by cell.
    drawn = sqllab_run.report["grid"]["rows"]
    assert len(drawn) >= 10, sqllab_run.report["grid"]["text"][:500]
    assert [row["index"] for row in drawn] == list(range(len(drawn)))
    expected = [{"review_id": str(row["review_id"]), "sentiment": row["sentiment"]} for row in rows[: len(drawn)]]
    assert [{k: row["cells"][k] for k in ("review_id", "sentiment")} for row in drawn] == expected


def test_sqllab_api_batches_each_statement_of_a_script(provision: Any, full_stack: Stack) -> None:
    # SQL Lab runs a script statement by statement; each one is rewritten on its own.
    script = (
        f"{PER_ROW} WHERE review_id <= 500;\n{PER_ROW} WHERE review_id > 500 AND review_id <= 1000 ORDER BY review_id"
    )
    payload = {
        "database_id": postgres_database_id(provision, full_stack),
        "sql": script,
        "schema": "public",
        "runAsync": False,
        "queryLimit": ROWS,
        "client_id": uuid.uuid4().hex[:10],
    }
    before = sentiment_counts(full_stack.bridge_url)
    with provision.api_session(full_stack.site) as client:
        answer = client.post("/api/v1/sqllab/execute/", json=payload)
    bridge = counted(full_stack.bridge_url, before)
    assert answer.status_code == 200, answer.text[:2000]
    result = answer.json()
    assert result["status"] == "success"
    assert 2 <= bridge.requests <= 2 * MOST_BATCHED_REQUESTS, bridge  # not 1,000
    texts = bodies(f"review_id > 500 AND review_id <= {ROWS}")
    labels = model_labels(full_stack.bridge_url, list(texts.values()))
    assert [(row["review_id"], row["sentiment"]) for row in result["data"]] == [
        (k, labels[texts[k]]) for k in sorted(texts)
    ]
