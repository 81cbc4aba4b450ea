"""docs/security.md and tests/security/ stay in step: every attack test is named on that page
next to the rule it breaks, and every test the page names exists (a renamed or deleted test fails
here, and so does a new one nobody wrote down)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"`(tests/security/test_\w+\.py)::(test_\w+)`")


def _named_on_the_page() -> set[tuple[str, str]]:
    return set(REFERENCE.findall((ROOT / "docs" / "security.md").read_text()))


def _tests_in_the_folder() -> set[tuple[str, str]]:
    found = set()
    for path in sorted((ROOT / "tests" / "security").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
                found.add((str(path.relative_to(ROOT)), node.name))
    return found


def test_every_security_test_is_on_the_page() -> None:
    tests = _tests_in_the_folder()
    assert len(tests) > 50  # the folder was read
    missing = sorted(f"{path}::{name}" for path, name in tests - _named_on_the_page())
    assert missing == [], "docs/security.md does not name these tests"


def test_every_test_the_page_names_exists() -> None:
    named = _named_on_the_page()
    assert len(named) > 50  # the page was read
    stale = sorted(f"{path}::{name}" for path, name in named - _tests_in_the_folder())
    assert stale == [], "docs/security.md names tests that do not exist"
