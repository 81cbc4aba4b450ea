"""A token sees only the models it may score (or train): the listing leaves the others out and
describing one is 403, since a description carries the training query and metrics. Before, any
valid token, even one for one model, read every model's manifest and lineage."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from sqlml.bridge.auth import derive_token
from sqlml.bridge.registry import Registry
from tests.bridge import sqlml_test_fakes as fakes

from .test_bridge_derived_tokens import PARENT, bearer, bridge

TOKENS = {PARENT: ["predict:*"], "lead-only": ["predict:lead_score"], "trainer": ["train"], "admin": ["admin"]}


def test_a_token_lists_and_describes_only_the_models_it_may_score(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "store")
    fakes.publish(registry, "lead_score")
    fakes.publish(registry, "sentiment", "fake_echo")
    narrowed = derive_token(PARENT, ["predict:sentiment"], "analyst")
    with TestClient(bridge(registry, TOKENS), raise_server_exceptions=False) as client:

        def listed(token: str) -> set[str]:
            return {row["name"] for row in client.get("/v1/models", headers=bearer(token)).json()["models"]}

        assert listed("lead-only") == {"lead_score"}
        assert listed(narrowed) == {"sentiment"}
        assert listed("admin") == listed("trainer") == listed(PARENT) == {"lead_score", "sentiment"}
        assert client.get("/v1/models/sentiment", headers=bearer("lead-only")).status_code == 403
        assert client.get("/v1/models/sentiment/versions/1", headers=bearer("lead-only")).status_code == 403
        assert client.get("/v1/models/lead_score", headers=bearer(narrowed)).status_code == 403
        assert client.get("/v1/models/lead_score", headers=bearer("lead-only")).status_code == 200
