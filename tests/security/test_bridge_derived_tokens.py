"""Issue #14: tokens the PostgreSQL extension derives from a configured one, for one database role.

The format is a contract with the extension's own copy, so the first test rebuilds a token from
the written specification with the standard library alone. The rest attack the verifier: forged
MACs, swapped payloads, widened scopes, nested derivation, a parent removed from the settings.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sqlml.bridge.app import create_app
from sqlml.bridge.auth import TokenAuth, derive_token
from sqlml.bridge.registry import Registry
from sqlml.bridge.settings import BridgeSettings
from sqlml.errors import Unauthorized
from tests.bridge import sqlml_test_fakes as fakes

PARENT = "parent-token-of-the-extension"
TOKENS = {PARENT: ["predict:*"], "lead-only": ["predict:lead_score"], "admin-token": ["admin"]}
LEAD_ROWS = {"rows": [{"a": 1, "b": 2}]}
SENTIMENT_ROWS = {"rows": [{"text": "great"}]}


def spec_token(parent: str, scopes: list[str], sub: str) -> str:
    """The token as the specification in bridge/auth.py (and docs/http-api.md) writes it."""
    claims = {"p": hashlib.sha256(parent.encode()).hexdigest()[:16], "s": sorted(scopes), "sub": sub}
    dumped = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    payload = base64.urlsafe_b64encode(dumped).decode().rstrip("=")
    return "sqlmld1." + payload + "." + hmac.new(parent.encode(), payload.encode(), hashlib.sha256).hexdigest()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "store")
    fakes.publish(registry, "lead_score")
    fakes.publish(registry, "sentiment", "fake_echo")
    return registry


def bridge(registry: Registry, tokens: dict[str, list[str]]) -> FastAPI:
    return create_app(BridgeSettings.model_validate({"store": registry.url, "tokens": tokens}))


@pytest.fixture
def anon(registry: Registry) -> Iterator[TestClient]:
    with TestClient(bridge(registry, TOKENS), raise_server_exceptions=False) as client:
        yield client


def test_derive_token_follows_the_shared_format() -> None:
    scopes = ["predict:sentiment", "predict:lead_score"]
    assert derive_token(PARENT, scopes, "analyst") == spec_token(PARENT, scopes, "analyst")
    assert derive_token(PARENT, scopes, "analyst").startswith("sqlmld1.")


def test_derived_token_scores_its_model_only(anon: TestClient) -> None:
    token = derive_token(PARENT, ["predict:lead_score"], "analyst")
    scored = anon.post("/v1/models/lead_score/predict", json=LEAD_ROWS, headers=bearer(token))
    assert scored.status_code == 200, scored.text
    assert scored.json()["rows"] == [{"total": 3.0}]
    other = anon.post("/v1/models/sentiment/predict", json=SENTIMENT_ROWS, headers=bearer(token))
    assert (other.status_code, other.json()["error"]["code"]) == (403, "forbidden")


def test_spec_built_token_is_accepted(anon: TestClient) -> None:
    token = spec_token(PARENT, ["predict:sentiment"], "reporting")
    assert anon.post("/v1/models/sentiment/predict", json=SENTIMENT_ROWS, headers=bearer(token)).status_code == 200


def test_derived_token_cannot_widen_its_parent(anon: TestClient) -> None:
    claims_admin = derive_token("lead-only", ["admin", "predict:*", "train"], "mallory")
    assert anon.put("/v1/models/lead_score/pin", headers=bearer(claims_admin)).status_code == 403
    widened = anon.post("/v1/models/sentiment/predict", json=SENTIMENT_ROWS, headers=bearer(claims_admin))
    assert widened.status_code == 403
    assert TokenAuth(TOKENS).scopes(f"Bearer {claims_admin}") == frozenset()
    from_admin = derive_token("admin-token", ["admin"], "ops")
    assert TokenAuth(TOKENS).scopes(f"Bearer {from_admin}") == frozenset({"admin"})


def forged_mac(token: str) -> str:
    flipped = "0" if token[-1] != "0" else "1"
    return token[:-1] + flipped


def swapped_payload(token: str) -> str:
    """The payload of a wider token with the MAC of this one."""
    wider = derive_token(PARENT, ["predict:*"], "analyst")
    return ".".join([*wider.split(".")[:2], token.split(".")[2]])


def unpadded(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def signed(payload: str, parent: str = PARENT) -> str:
    """A payload that is correctly signed by `parent` but is not a valid claim set."""
    return f"sqlmld1.{payload}.{hmac.new(parent.encode(), payload.encode(), hashlib.sha256).hexdigest()}"


PARENT_FINGERPRINT = hashlib.sha256(PARENT.encode()).hexdigest()[:16].encode()
LEAD_TOKEN = derive_token(PARENT, ["predict:lead_score"], "analyst")
NESTED = spec_token(LEAD_TOKEN, ["predict:lead_score"], "nested")  # derived from a derived token
REFUSED = {
    "forged MAC": forged_mac(LEAD_TOKEN),
    "swapped payload": swapped_payload(LEAD_TOKEN),
    "unknown parent": derive_token("not-configured", ["predict:lead_score"], "analyst"),
    "nested derivation": NESTED,
    "bad base64": signed("!!not*base64!!"),
    "bad JSON": signed(unpadded(b"{not json")),
    "not an object": signed(unpadded(b'["predict:lead_score"]')),
    "scopes not strings": signed(unpadded(b'{"p":"%s","s":[1],"sub":"a"}' % PARENT_FINGERPRINT)),
    "missing parent": signed(unpadded(b'{"s":["predict:lead_score"],"sub":"a"}')),
    "too many parts": LEAD_TOKEN + ".extra",
    "deeply nested JSON": signed(unpadded(b"[" * 5000)),
}


@pytest.mark.parametrize("token", list(REFUSED.values()), ids=list(REFUSED))
def test_invalid_derived_tokens_get_one_401(anon: TestClient, token: str) -> None:
    response = anon.post("/v1/models/lead_score/predict", json=LEAD_ROWS, headers=bearer(token))
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("unauthorized", "invalid bearer token")


def test_derived_token_dies_with_its_parent(registry: Registry) -> None:
    token = derive_token(PARENT, ["predict:lead_score"], "analyst")
    with TestClient(bridge(registry, TOKENS)) as before:
        assert before.post("/v1/models/lead_score/predict", json=LEAD_ROWS, headers=bearer(token)).status_code == 200
    without_parent = {t: s for t, s in TOKENS.items() if t != PARENT}
    with TestClient(bridge(registry, without_parent), raise_server_exceptions=False) as after:
        response = after.post("/v1/models/lead_score/predict", json=LEAD_ROWS, headers=bearer(token))
        assert response.status_code == 401


def test_a_derived_token_cannot_be_a_parent() -> None:
    with pytest.raises(ValueError, match="derived"):
        derive_token(LEAD_TOKEN, ["predict:lead_score"], "nested")
    configured_derived = {LEAD_TOKEN: ["predict:*"]}  # even when an operator configures one
    with pytest.raises(Unauthorized):
        TokenAuth(configured_derived).scopes(f"Bearer {spec_token(LEAD_TOKEN, ['predict:x'], 'n')}")
