"""A model the store cannot describe: the listing carries its `error` (and OpenAPI says so), and
DuckDB's refresh skips it, keeping its macro, while every other model's macros refresh."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from sqlml.bridge.api_schemas import ModelList
from sqlml.bridge.app import create_app
from sqlml.bridge.client import LocalClient
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings
from sqlml.udfs import refresh, register
from sqlml.udfs.duckdb_functions import UnreadableModelWarning
from tests.core.test_store_faults import truncate
from tests.udfs.fakes import publish_fakes


def corrupt(registry: Registry, model: str, version: int = 1) -> None:
    truncate(Path(registry.root) / model / str(version) / "manifest.json")


def macros(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("SELECT function_name FROM duckdb_functions() WHERE database_name = 'ml'").fetchall()
    return {name for (name,) in rows}


def test_refresh_keeps_the_macro_of_an_unreadable_model_and_refreshes_the_others(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "store")
    publish_fakes(registry, tmp_path, names=("sentiment", "adder"))
    con = duckdb.connect()
    register(con, LocalClient(registry))
    corrupt(registry, "adder")
    publish_fakes(registry, tmp_path, names=("stamp",))
    with pytest.warns(UnreadableModelWarning, match='model "adder" cannot be read .*its macro is kept'):
        assert refresh(con) == ["adder", "sentiment", "stamp"]
    assert {"adder", "sentiment", "stamp"} <= macros(con)
    assert con.execute("SELECT ml.sentiment('bad coffee').label").fetchall() == [("negative",)]


def test_an_unreadable_model_at_register_gets_no_macro_and_the_others_do(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "store")
    publish_fakes(registry, tmp_path, names=("sentiment", "adder"))
    corrupt(registry, "adder")
    con = duckdb.connect()
    with pytest.warns(UnreadableModelWarning, match='model "adder" .*it gets no macro'):
        register(con, LocalClient(registry))
    assert "sentiment" in macros(con) and "adder" not in macros(con)


def test_the_listing_with_a_corrupt_model_matches_its_documented_schema(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "store")
    publish_fakes(registry, tmp_path, names=("sentiment", "adder"))
    corrupt(registry, "adder")
    settings = BridgeSettings.model_validate({"store": registry.url, "tokens": {"t": ["admin"]}})
    with TestClient(create_app(settings), headers={"Authorization": "Bearer t"}) as http:
        response = http.get("/v1/models")
        openapi = http.get("/openapi.json").json()
    assert response.status_code == 200, response.text
    rows = {row["name"]: row for row in response.json()["models"]}
    assert rows["adder"]["error"]["code"] == "store_corrupt" and "task" not in rows["adder"]
    assert "error" not in rows["sentiment"] and rows["sentiment"]["task"] == "sentiment"
    listing = ModelList.model_validate(response.json())
    assert listing.models[0].error is not None and listing.models[0].signature is None
    summary = openapi["components"]["schemas"]["ModelSummary"]
    assert {"anyOf": [{"$ref": "#/components/schemas/ErrorBody"}, {"type": "null"}]}.items() <= summary["properties"][
        "error"
    ].items()
    assert set(summary["required"]) == {"name", "versions", "aliases", "loaded"}
