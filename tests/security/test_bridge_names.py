"""Issue #14: one strict name rule wherever the bridge checks a name.

`^...$` accepted "x\\n": `$` also matches before a trailing newline, so "staging\\n" became an
alias (and a store path) next to "staging". Names are checked whole, ASCII only, and an alias
may not take a word a reference resolves by itself (`latest`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sqlml.bridge.app import create_app
from sqlml.bridge.jobs.spec import parse_spec
from sqlml.bridge.manifest import Manifest, check_alias, check_name
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings
from sqlml.errors import InvalidName
from tests.bridge import sqlml_test_fakes as fakes

BAD_NAMES = {
    "trailing newline": "x\n",
    "alias with newline": "staging\n",
    "NUL": "sum\x00",
    "NUL inside": "su\x00m",
    "Cyrillic s": "\u0455um",
    "fullwidth s": "\uff53um",
    "dotless i": "\u0131d",
    "dot dot": "..",
    "path": "a/b",
    "empty": "",
    "upper case": "Sum",
    "leading digit": "1sum",
    "too long": "a" * 64,
}
ADMIN = {"Authorization": "Bearer admin-token"}


@pytest.mark.parametrize("name", list(BAD_NAMES.values()), ids=list(BAD_NAMES))
def test_check_name_and_check_alias_refuse(name: str) -> None:
    with pytest.raises(InvalidName):
        check_name(name)
    with pytest.raises(InvalidName):
        check_alias(name)


@pytest.mark.parametrize("name", ["sum", "lead_score", "a" * 63, "m2"])
def test_plain_identifiers_pass(name: str) -> None:
    assert check_name(name) == name
    assert check_alias(name) == name


def test_latest_is_a_name_but_not_an_alias() -> None:
    assert check_name("latest") == "latest"
    with pytest.raises(InvalidName, match="reserved"):
        check_alias("latest")


def test_manifest_and_job_spec_refuse_a_name_with_a_trailing_newline() -> None:
    with pytest.raises(InvalidName, match="invalid model name"):
        Manifest.model_validate(
            {"name": "lead\n", "runtime": "fake_sum", "task": "regression", "signature": fakes.SUM_SIGNATURE}
        )
    with pytest.raises(InvalidName, match="invalid model name"):
        parse_spec({"model": "lead\n", "task": "regression", "target": "y"})


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[TestClient]:
    registry = Registry(tmp_path / "store")
    fakes.publish(registry, "sum", alias="staging")
    settings = {"store": registry.url, "tokens": {"admin-token": ["admin"]}}
    with TestClient(create_app(BridgeSettings.model_validate(settings)), headers=ADMIN) as client:
        yield client


# URL-encoded forms of the bad names, as a caller would put them in a path.
BAD_PATH_NAMES = ["x%0A", "staging%0A", "sum%00", "%D1%95um", "%EF%BD%93um", "%2E%2E"]


@pytest.mark.parametrize("alias", [*BAD_PATH_NAMES, "latest"])
def test_alias_route_refuses_bad_and_reserved_aliases(admin: TestClient, alias: str) -> None:
    response = admin.put(f"/v1/models/sum/aliases/{alias}", json={"version": 1})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_name"
    assert admin.get("/v1/models/sum").json()["aliases"] == {"staging": 1}


@pytest.mark.parametrize("model", BAD_PATH_NAMES)
def test_model_routes_refuse_bad_names(admin: TestClient, model: str) -> None:
    predict = admin.post(f"/v1/models/{model}/predict", json={"rows": [{"a": 1, "b": 1}]})
    assert (predict.status_code, predict.json()["error"]["code"]) == (400, "invalid_name")
    describe = admin.get(f"/v1/models/{model}")
    assert (describe.status_code, describe.json()["error"]["code"]) == (400, "invalid_name")


def test_rollback_refuses_an_alias_with_a_newline(admin: TestClient) -> None:
    response = admin.post("/v1/models/sum/rollback", json={"alias": "staging\n"})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_name")
