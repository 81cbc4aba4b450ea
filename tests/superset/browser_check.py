"""Open Superset dashboards in headless Debian Chromium and report what every chart shows.

Runs with Superset's venv Python, which ships Selenium (the test suite's venv does not need it):

    .venv-superset/bin/python tests/superset/browser_check.py URL USER PASSWORD OUT_DIR SLUG...

For each dashboard it logs in once, opens `/superset/dashboard/<slug>/`, waits until no chart shows
a loading indicator, saves `OUT_DIR/<slug>.png`, and prints one JSON document: per dashboard the
title, the screenshot path, and per chart its name, viz type, state (`rendered`, `empty`, `error`,
`loading`), how many data marks it drew (table rows, or 1 for a drawn ECharts canvas/SVG), and the
error text if any. The pytest side asserts on that report.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1600, 2200)  # tall enough that every chart of a dashboard is on screen and gets rendered

# Read in the page, once per poll: one round trip for all charts of a dashboard.
CHART_STATES_JS = """
return Array.from(document.querySelectorAll('[data-test="chart-grid-component"]')).map((chart) => {
  const text = chart.innerText || '';
  const error = chart.querySelector(
    '[data-test="error-tooltip"], .ant-alert-error, [role="alert"], [data-test="error-message"]');
  const loading = chart.querySelector('[data-test="loading-indicator"]');
  const tableRows = chart.querySelectorAll('table tbody tr').length;
  const drawn = chart.querySelectorAll('[data-test="chart-container"] canvas, [data-test="chart-container"] svg path');
  let state = 'loading';
  if (loading) state = 'loading';
  else if (error || /error|unexpected|failed/i.test(text) && !tableRows && !drawn.length) state = 'error';
  else if (/No results were returned|No data/i.test(text) && !tableRows) state = 'empty';
  else if (tableRows > 0 || drawn.length > 0) state = 'rendered';
  return {
    name: chart.getAttribute('data-test-chart-name'),
    viz_type: chart.getAttribute('data-test-viz-type'),
    chart_id: chart.getAttribute('data-test-chart-id'),
    state: state,
    marks: tableRows > 0 ? tableRows : (drawn.length > 0 ? 1 : 0),
    error: state === 'error' ? text.slice(0, 500) : null,
  };
});
"""


@contextmanager
def browser_session() -> Iterator[WebDriver]:
    """Headless Chromium on a throwaway profile, quit and removed on exit."""
    profile = Path(tempfile.mkdtemp(prefix="sqlml-chromium-"))
    driver = browser(profile)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def browser(profile: Path) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(flag)
    # Selenium Manager would try to download a driver; the Debian one is named explicitly.
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def log_in(driver: WebDriver, url: str, user: str, password: str) -> None:
    driver.get(f"{url}/login/")
    wait = WebDriverWait(driver, 60)
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, '[data-test="username-input"]')))
    driver.find_element(By.CSS_SELECTOR, '[data-test="username-input"]').send_keys(user)
    driver.find_element(By.CSS_SELECTOR, '[data-test="password-input"]').send_keys(password)
    driver.find_element(By.CSS_SELECTOR, '[data-test="login-button"], button[type="submit"]').click()
    wait.until(lambda d: "/login" not in d.current_url)


def check_dashboard(driver: WebDriver, url: str, slug: str, out_dir: Path, timeout_s: float) -> dict[str, Any]:
    driver.set_window_size(*WINDOW)
    driver.get(f"{url}/superset/dashboard/{slug}/")
    WebDriverWait(driver, 60).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, '[data-test="chart-grid-component"]'))
    )
    deadline = time.monotonic() + timeout_s
    charts: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        charts = driver.execute_script(CHART_STATES_JS)
        if charts and all(chart["state"] != "loading" for chart in charts):
            break
        time.sleep(1.0)
    charts = driver.execute_script(CHART_STATES_JS)
    # Crop the page to the dashboard: shrink the window to just below the last chart.
    bottom = driver.execute_script(
        "return Math.max(...Array.from(document.querySelectorAll("
        '\'[data-test="dashboard-component-chart-holder"], [data-test="chart-grid-component"]\'))'
        ".map((c) => c.getBoundingClientRect().bottom + window.scrollY));"
    )
    # The window includes browser chrome that the page does not get (about 140 px, even headless).
    chrome = driver.execute_script("return window.outerHeight - window.innerHeight;")
    driver.set_window_size(WINDOW[0], min(WINDOW[1], int(bottom) + int(chrome) + 24))
    time.sleep(2.0)  # let ECharts redraw at the new size and finish its entry animation
    screenshot = out_dir / f"{slug}.png"
    driver.save_screenshot(str(screenshot))
    return {"slug": slug, "title": driver.title, "screenshot": str(screenshot), "charts": charts}


def main(argv: list[str]) -> int:
    url, user, password, out = argv[1:5]
    slugs = argv[5:]
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with browser_session() as driver:
        log_in(driver, url, user, password)
        report = [check_dashboard(driver, url, slug, out_dir, timeout_s=240.0) for slug in slugs]
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
