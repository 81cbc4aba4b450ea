"""The error tree: stable codes, wire round trip, hints."""

from __future__ import annotations

from sqlml.errors import ERRORS_BY_CODE, InvalidInput, ModelNotFound, SqlmlError


def test_codes_are_unique_and_statuses_are_http() -> None:
    codes = [cls.code for cls in ERRORS_BY_CODE.values()]
    assert len(codes) == len(set(codes))
    assert all(100 <= cls.status < 600 for cls in ERRORS_BY_CODE.values())


def test_round_trip_keeps_class_message_and_hint() -> None:
    error = ModelNotFound("lead_scor", ["lead_score", "sentiment"])
    rebuilt = SqlmlError.from_dict(error.to_dict())
    assert isinstance(rebuilt, ModelNotFound)
    assert rebuilt.message == 'model "lead_scor" not found'
    assert rebuilt.hint == "did you mean 'lead_score'?"
    assert rebuilt.status == 404
    assert str(rebuilt) == "model \"lead_scor\" not found (hint: did you mean 'lead_score'?)"


def test_unknown_codes_become_the_root_error() -> None:
    rebuilt = SqlmlError.from_dict({"code": "from_the_future", "message": "m"})
    assert type(rebuilt) is SqlmlError
    assert InvalidInput("x").status == 422
