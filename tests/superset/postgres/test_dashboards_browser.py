"""The three dashboards in a real headless Chromium: every chart loads, draws data, shows no error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.superset.postgres.conftest import Stack
from tests.superset.stack import REPO, SUPERSET_VENV

DASHBOARDS = {
    "customer-sentiment": {"Sentiment mix by product category", "Most negative reviews"},
    "lead-pipeline": {"Leads ranked by conversion probability", "Conversion probability distribution"},
    "energy-forecast": {
        f"Energy forecast: {series}"
        for series in ("global_active_power", "sub_metering_1", "sub_metering_2", "sub_metering_3", "remainder")
    },
}
# Where screenshots go: a temp folder by default; SQLML_SCREENSHOT_DIR=docs/screenshots refreshes the docs.
SCREENSHOT_DIR_ENV = "SQLML_SCREENSHOT_DIR"


@pytest.fixture(scope="module")
def browser_report(full_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        pytest.fail("headless Chromium is missing: apt-get install -y chromium chromium-driver")
    out_dir = Path(os.environ.get(SCREENSHOT_DIR_ENV) or tmp_path_factory.mktemp("screenshots"))
    site = full_stack.site
    command = [str(SUPERSET_VENV / "bin/python"), str(REPO / "tests/superset/browser_check.py")]
    command += [site.url, site.admin_user, site.admin_password, str(out_dir), *DASHBOARDS]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report: list[dict[str, Any]] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


# The first test pays for the whole stack (on a clean machine: Superset's venv and metadata template).
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("slug", list(DASHBOARDS))
def test_every_chart_renders_data(browser_report: list[dict[str, Any]], slug: str, full_stack: Stack) -> None:
    dashboard = next(item for item in browser_report if item["slug"] == slug)
    charts = {chart["name"]: chart for chart in dashboard["charts"]}
    assert set(charts) == DASHBOARDS[slug]
    problems = {name: chart for name, chart in charts.items() if chart["state"] != "rendered" or chart["marks"] < 1}
    assert not problems, f"charts without data or with errors (Superset log: {full_stack.site.log_file}): {problems}"
    screenshot = Path(dashboard["screenshot"])
    assert screenshot.stat().st_size > 20_000  # a real picture, not a blank page
    shutil.copy(screenshot, full_stack.site.home / screenshot.name)


def test_up_prints_where_and_how_to_log_in(full_stack: Stack) -> None:
    assert f"{full_stack.site.url}/dashboard/list/" in full_stack.up_output
    assert "login: admin / admin" in full_stack.up_output
    assert "imported dashboards/assets" in full_stack.up_output
    # PostgreSQL: the least-privilege role, and each database setting changed, with old and new value.
    assert "Superset connects as sqlml_superset" in full_stack.up_output
    assert "SET sqlml.bridge_url: not set -> " in full_stack.up_output


def test_charts_query_postgres_through_the_batching_rewriter(
    browser_report: list[dict[str, Any]], full_stack: Stack
) -> None:
    # The browser has loaded every chart; the Superset log shows the mutator batched the per-row calls.
    log = full_stack.site.log_file.read_text()
    assert "sqlml rewriter batched ml.* calls" in log
