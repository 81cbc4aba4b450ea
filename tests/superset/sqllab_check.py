"""Run one query in Superset's SQL Lab, in headless Debian Chromium, and report what SQL Lab shows.

Runs with Superset's venv Python, which ships Selenium (the test suite's venv does not need it):

    .venv-superset/bin/python tests/superset/sqllab_check.py URL USER PASSWORD DATABASE_ID SQL OUT_DIR

It logs in, opens SQL Lab on a new tab holding SQL for the database (`/sqllab/?dbid=…&sql=…`, the
link Superset itself makes), clicks Run, waits for the result grid, saves `OUT_DIR/sqllab.png`, and
prints one JSON document: the result SQL Lab received from `/api/v1/sqllab/execute/` (status, columns,
every row), the rows the grid drew (the grid draws only those in view), and the result pane's text.
The pytest side asserts on that report.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from browser_check import browser_session, log_in  # same folder: the script's own directory is on sys.path
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

# Installed before the page's own scripts run, so SQL Lab's HTTP client calls this fetch: it keeps
# each answer of the execute endpoint, which holds every row (the grid only draws those in view).
CAPTURE_EXECUTE_JS = """
window.__sqllabAnswers = [];
const pageFetch = window.fetch;
window.fetch = async (...args) => {
  const response = await pageFetch(...args);
  const url = String((args[0] && args[0].url) || args[0]);
  if (url.includes('/api/v1/sqllab/execute/')) {
    response.clone().json()
      .then((body) => window.__sqllabAnswers.push(body))
      .catch((error) => window.__sqllabAnswers.push({status: 'unreadable', error: String(error)}));
  }
  return response;
};
"""

# The rows the result grid (AG Grid) has drawn: per row its index and its cells by column id.
GRID_ROWS_JS = """
const pane = document.querySelector('[data-test="south-pane"]');
if (!pane) return {text: '', rows: []};
const rows = Array.from(pane.querySelectorAll('.ag-center-cols-container .ag-row')).map((row) => ({
  index: Number(row.getAttribute('row-index')),
  cells: Object.fromEntries(Array.from(row.querySelectorAll('.ag-cell')).map(
    (cell) => [cell.getAttribute('col-id'), cell.innerText.trim()])),
}));
rows.sort((a, b) => a.index - b.index);
return {text: pane.innerText, rows: rows};
"""


def run_in_sqllab(driver: WebDriver, url: str, database_id: int, sql: str, timeout_s: float) -> dict[str, Any]:
    query = urlencode({"dbid": database_id, "sql": sql, "name": "sqlml batching check"})
    driver.get(f"{url}/sqllab/?{query}")
    wait = WebDriverWait(driver, 60)
    run = wait.until(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, '[data-test="run-query-action"]')))
    # The editor holds the query before Run is worth pressing (the tab is created from the URL).
    wait.until(lambda d: "ml.sentiment" in d.execute_script("return document.body.innerText;"))
    run.click()
    deadline = time.monotonic() + timeout_s
    answers: list[dict[str, Any]] = []
    grid: dict[str, Any] = {"text": "", "rows": []}
    while time.monotonic() < deadline:
        answers = driver.execute_script("return window.__sqllabAnswers;") or []
        grid = driver.execute_script(GRID_ROWS_JS)
        if answers and (answers[-1].get("status") != "success" or grid["rows"]):
            break
        time.sleep(0.5)
    return {"answers": answers, "grid": grid}


def main(argv: list[str]) -> int:
    url, user, password, database_id, sql, out = argv[1:7]
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with browser_session() as driver:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CAPTURE_EXECUTE_JS})
        log_in(driver, url, user, password)
        report = run_in_sqllab(driver, url, int(database_id), sql, timeout_s=240.0)
        time.sleep(1.0)  # let the grid finish drawing before the picture
        report["grid"] = driver.execute_script(GRID_ROWS_JS)
        report["screenshot"] = str(out_dir / "sqllab.png")
        driver.save_screenshot(report["screenshot"])
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
