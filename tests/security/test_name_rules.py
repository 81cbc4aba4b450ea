"""Drift tests: the PostgreSQL helper (standard library only, embedded in the extension) is built
from the rules that live once in the Python package (sqlml/naming.py, sqlml/sql/), and keeps a copy
of one thing it cannot import: the bridge's token derivation. These tests load the helper as the
extension ships it and fail when it and the package disagree, or when a table the package derives
(bridge error codes, their SQLSTATEs, the docs' table) misses an entry."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sqlml import naming
from sqlml.bridge import auth

sys.path.insert(0, str(Path(__file__).parents[2] / "extension" / "tests"))
from built_helper import built_helper

helper = built_helper("sqlml_pg_copy")

NAMES = ["a", "lead_score", "a" * 63, "a" * 64, "x\n", "staging\n", "A", "1a", "_a", "a-b", "a b", "é", "a\x00",
         "lead_score:3", "lead_score:staging", "lead_score:latest", "lead_score:3\n", "lead_score:", ":3",
         "lead_score:Staging", "lead_score:../x", "lead_score:1234567890"]  # fmt: skip


def test_the_helper_copies_the_name_rules() -> None:
    assert helper.NAME_RULE == naming.NAME_RULE
    assert helper.NAME.pattern == naming.NAME.pattern
    assert helper.MODEL_REF.pattern == naming.MODEL_REF.pattern
    assert helper.RESERVED_ALIASES == naming.RESERVED_ALIASES


@pytest.mark.parametrize("text", NAMES)
def test_both_sides_accept_the_same_names(text: str) -> None:
    assert (helper.NAME.match(text) is not None) == naming.is_name(text)
    assert (helper.MODEL_REF.match(text) is not None) == naming.is_model_ref(text)


def test_no_name_with_a_trailing_newline_passes() -> None:
    assert not naming.is_name("x\n") and not naming.is_model_ref("x:staging\n")


@pytest.mark.parametrize(
    ("parent", "scopes", "subject"),
    [("tok", ["predict:lead_score"], "analyst"), ("t" * 80, ["predict:a", "predict:b"], "ünïcode"), ("p", [], "")],
)
def test_the_helper_derives_tokens_as_the_bridge_does(parent: str, scopes: list[str], subject: str) -> None:
    assert helper.derive_token(parent, scopes, subject) == auth.derive_token(parent, scopes, subject)


def test_every_bridge_error_code_has_a_sqlstate() -> None:
    """A code the bridge can answer with and the extension does not map reaches SQL as XX000."""
    from sqlml.bridge.state import HTTP_CODES
    from sqlml.errors import ERRORS_BY_CODE

    codes = set(ERRORS_BY_CODE) | set(HTTP_CODES.values())
    assert sorted(codes - set(helper.SQLSTATES)) == []
    assert all(len(state) == 5 for state in helper.SQLSTATES.values())


def test_the_batch_size_cap_is_the_bridges_row_limit() -> None:
    from sqlml.bridge.settings import BridgeSettings

    assert BridgeSettings().max_request_rows == helper.MAX_BATCH_SIZE


def test_the_sqlstate_table_in_the_docs_is_the_helpers() -> None:
    """docs/postgres.md's table of bridge codes and SQLSTATEs says what the helper does."""
    import re

    text = (Path(__file__).parents[2] / "docs" / "postgres.md").read_text()
    table = text[text.index("| bridge code | SQLSTATE |") :].split("\n\n")[0]
    documented: dict[str, str] = {}
    for cells in (line.split("|") for line in table.splitlines()[2:]):
        for names, state in ((cells[1], cells[2]), (cells[4], cells[5])):
            for code in re.findall(r"[a-z_]+", names.split("(")[0]):
                documented[code] = state.strip()
    from sqlml.bridge.state import HTTP_CODES
    from sqlml.errors import ERRORS_BY_CODE

    assert sorted((set(ERRORS_BY_CODE) | set(HTTP_CODES.values())) - set(documented)) == []
    assert documented == {code: state for code, state in helper.SQLSTATES.items() if code in documented}
