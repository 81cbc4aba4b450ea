"""The SECURITY DEFINER steps that put a caller's rows into a bridge request (`ml._evaluate_rows`,
and `ml._forecast_rows` for ml.forecast's future and history rows) take only JSON arrays of row
objects: any other text is refused before a request is made, so it can never shape the body the
token travels with. Real PostgreSQL, the installed extension and a real HTTP listener standing in
for the bridge."""

from __future__ import annotations

import psycopg
import pytest

from .conftest import Captured

pytestmark = [pytest.mark.postgres, pytest.mark.bridge]

NOT_ROWS = [
    "not json",
    '{"mostype": 3}',  # one object, not an array
    "[1, 2]",  # an array of numbers
    '[{"mostype": 3}], "model": "other"',  # text that would splice a second key into the body
    "",
]


@pytest.mark.parametrize("text", NOT_ROWS)
def test_evaluate_rows_refuses_text_that_is_not_a_json_array_of_rows(make_role, listener: Captured, text: str) -> None:
    caller = make_role("sqlml_user")
    with caller.connect() as session:
        session.execute(f"SET sqlml.bridge_url = '{listener.url}'")
        with pytest.raises(psycopg.Error) as raised:
            session.execute("SELECT ml._evaluate_rows('lead_score', %s)", [text])
    assert raised.value.sqlstate == "22023"
    assert "ml._evaluate_rows takes a JSON array of row objects" in str(raised.value)
    assert listener.requests == []


def test_an_array_of_rows_is_sent(make_role, listener: Captured) -> None:
    """The control: the same call with rows reaches the listener, so the refusals above are the check's."""
    caller = make_role("sqlml_user")
    with caller.connect() as session:
        session.execute(f"SET sqlml.bridge_url = '{listener.url}'")
        with pytest.raises(psycopg.Error):  # the listener answers 401
            session.execute("SELECT ml._evaluate_rows('lead_score', %s)", ['[{"mostype": 3}]'])
    assert len(listener.requests) == 1


@pytest.mark.parametrize("field", ["future", "history"])
@pytest.mark.parametrize("text", NOT_ROWS)
def test_forecast_rows_refuses_future_or_history_that_is_not_a_json_array_of_rows(
    make_role, listener: Captured, field: str, text: str
) -> None:
    caller = make_role("sqlml_user")
    future, history = (text, None) if field == "future" else (None, text)
    with caller.connect() as session:
        session.execute(f"SET sqlml.bridge_url = '{listener.url}'")
        with pytest.raises(psycopg.Error) as raised:
            session.execute("SELECT ml._forecast_rows('power', NULL, 3, NULL, %s, %s)", [future, history])
    assert raised.value.sqlstate == "22023"
    assert f"ml._forecast_rows {field} takes a JSON array of row objects" in str(raised.value)
    assert listener.requests == []


def test_forecast_rows_with_arrays_of_rows_are_sent(make_role, listener: Captured) -> None:
    """The control: arrays of row objects reach the listener, so the refusals above are the check's."""
    caller = make_role("sqlml_user")
    with caller.connect() as session:
        session.execute(f"SET sqlml.bridge_url = '{listener.url}'")
        with pytest.raises(psycopg.Error):  # the listener answers 401
            session.execute(
                "SELECT ml._forecast_rows('power', NULL, 3, NULL, %s, %s)", ['[{"ts": "2024-01-01"}]', "[]"]
            )
    assert len(listener.requests) == 1 and b'"future":[{"ts":"2024-01-01"}]' in listener.requests[0]
