"""`POST /v1/models/{name}/import`: each kind sent by `sqlml models import --bridge` to a real
`sqlml serve`, listed and scored by that bridge; then, on the app in process, the scopes (a pickle
needs admin), bad bodies and archives, and the OpenAPI entry."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sqlml.bridge.model_archive import pack_artifact
from sqlml.bridge.registry import Registry
from sqlml.cli import app as cli
from tests import imported_models as made
from tests.bridge.conftest import ADMIN, BridgeProcess

runner = CliRunner()
OCTET = {"Content-Type": "application/octet-stream"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **OCTET}


@pytest.mark.bridge
def test_each_kind_imported_through_a_served_bridge_is_listed_and_scored(
    tmp_path: Path, bridge_factory: Callable[..., BridgeProcess]
) -> None:
    bridge = bridge_factory(str(tmp_path / "store"))
    models = {
        "churn": made.xgboost_file(tmp_path),
        "upgrade": made.sklearn_pipeline(tmp_path),
        "tone": made.text_classifier(tmp_path / "tone-model"),
    }
    for name, path in models.items():
        args = ["models", "import", name, str(path), "--bridge", bridge.url, "--token", "admin-token"]
        result = runner.invoke(cli, [*args, "--alias", "production"])
        assert result.exit_code == 0, result.output
        assert f"imported {name} version 1" in result.stdout and "production→1" in result.stdout
    http = httpx.Client(base_url=bridge.url, headers={"Authorization": "Bearer admin-token"}, timeout=30)
    listed = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
    assert {"churn": "xgboost", "upgrade": "sklearn", "tone": "text_classifier"}.items() <= {
        name: row["runtime"] for name, row in listed.items()
    }.items()
    assert [c["name"] for c in listed["upgrade"]["signature"]["inputs"]] == ["age", "plan"]

    churn = http.post("/v1/models/churn/predict", json={"rows": [{"age": 0.9, "income_k": 0.5, "clicks": 2}]}).json()
    assert churn["rows"][0]["probability"] > 0.8
    upgrade = http.post("/v1/models/upgrade/predict", json={"columns": {"age": [20.0, 20.0], "plan": ["max", "pro"]}})
    assert upgrade.status_code == 200, upgrade.text
    assert upgrade.json()["columns"]["label"] == ["yes", "no"]
    tone = http.post("/v1/models/tone/predict", json={"columns": {"text": ["great coffee", None]}}).json()["columns"]
    assert tone["label"][0] in made.TEXT_LABELS.values() and tone["label"][1] is None
    assert set(tone) == {"label", "confidence", "score_negative", "score_neutral", "score_positive"}

    again = runner.invoke(cli, ["models", "import", "churn", str(models["churn"]), "--bridge", bridge.url,
                                "--token", "admin-token"])  # fmt: skip
    assert again.exit_code == 0 and "imported churn version 2" in again.stdout  # a version like any other
    assert http.get("/v1/models/churn").json()["aliases"] == {"production": 1}  # not promoted without --alias


def test_a_predict_only_token_cannot_import(client: TestClient, tmp_path: Path) -> None:
    body = made.xgboost_file(tmp_path).read_bytes()
    answer = client.post("/v1/models/churn/import?filename=churn.ubj", content=body, headers=bearer("all-token"))
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden" and "'train'" in answer.json()["error"]["message"]
    anonymous = client.post(
        "/v1/models/churn/import", content=body, headers={**OCTET, "Authorization": "Bearer nobody"}
    )
    assert anonymous.status_code == 401


def test_a_pickle_needs_admin_while_train_imports_xgboost(client: TestClient, tmp_path: Path) -> None:
    pickle = made.sklearn_pipeline(tmp_path).read_bytes()
    refused = client.post(
        "/v1/models/upgrade/import?filename=upgrade.joblib", content=pickle, headers=bearer("train-token")
    )
    assert refused.status_code == 403 and "'admin'" in refused.json()["error"]["message"]
    # a pickle sent without a file name is still recognised as one before it is loaded
    refused = client.post("/v1/models/upgrade/import?kind=sklearn", content=pickle, headers=bearer("train-token"))
    assert refused.status_code == 403
    xgboost = made.xgboost_file(tmp_path).read_bytes()
    accepted = client.post("/v1/models/churn/import?filename=churn.ubj", content=xgboost, headers=bearer("train-token"))
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["version"] == 1 and accepted.json()["manifest"]["runtime"] == "xgboost"
    admin = client.post(
        "/v1/models/upgrade/import?filename=upgrade.joblib", content=pickle, headers=bearer("admin-token")
    )
    assert admin.status_code == 201 and admin.json()["manifest"]["runtime"] == "sklearn"


def test_a_folder_travels_as_a_tar_or_a_zip(client: TestClient, registry: Registry, tmp_path: Path) -> None:
    folder = made.text_classifier(tmp_path / "tone")
    body, filename = pack_artifact(folder)
    assert filename == "tone.tar"
    answer = client.post(f"/v1/models/tone/import?filename={filename}&labels=sad,meh,glad", content=body, headers=OCTET)
    assert answer.status_code == 201, answer.text
    outputs = [c["name"] for c in answer.json()["manifest"]["signature"]["outputs"]]
    assert outputs == ["label", "confidence", "score_sad", "score_meh", "score_glad"]
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        for file in folder.iterdir():
            archive.write(file, f"tone/{file.name}")  # a zip of the folder itself, not of its files
    answer = client.post("/v1/models/tone/import?alias=staging", content=zipped.getvalue(), headers=OCTET)
    assert answer.status_code == 201, answer.text
    assert answer.json()["version"] == 2 and answer.json()["aliases"] == {"staging": 2}
    assert registry.versions("tone") == [1, 2]


def test_bad_bodies_are_client_errors_that_say_why(client: TestClient, registry: Registry, tmp_path: Path) -> None:
    def post(query: str, body: bytes) -> tuple[int, str]:
        answer = client.post(f"/v1/models/imported/import{query}", content=body, headers=OCTET)
        return answer.status_code, answer.json()["error"]["message"]

    assert post("", b"") == (400, "empty request body")
    status, message = post("?filename=model.json", b'{"learner": 1}')
    assert status == 400 and "is not an XGBoost model" in message
    status, message = post("?kind=onnx", b"x")
    assert status == 400 and "kind" in message
    status, message = post("?filename=churn.ubj&inputs=a%20double", made.xgboost_file(tmp_path).read_bytes())
    assert status == 422 and "takes 3 features" in message
    status, message = post("", b"\x00\x01 a file of no kind")
    assert status == 400 and "cannot tell what kind of model" in message
    escape = io.BytesIO()
    with tarfile.open(fileobj=escape, mode="w") as archive:
        data = b"{}"
        member = tarfile.TarInfo("../../config.json")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    status, message = post("?filename=m.tar", escape.getvalue())
    assert status == 400 and "unsafe path" in message
    linked = io.BytesIO()
    with tarfile.open(fileobj=linked, mode="w") as archive:
        member = tarfile.TarInfo("config.json")
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(member)
    status, message = post("?filename=m.tar", linked.getvalue())
    assert status == 400 and "not a plain file" in message
    assert "imported" not in registry.names()


def test_an_archive_that_unpacks_past_the_limit_is_refused(make_app: Callable[..., object], tmp_path: Path) -> None:
    app = make_app(max_upload_bytes=1000)
    big = io.BytesIO()
    with tarfile.open(fileobj=big, mode="w:gz") as archive:
        data = b"0" * 100_000  # compresses to a few hundred bytes
        member = tarfile.TarInfo("model.safetensors")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    with TestClient(app, headers=ADMIN, raise_server_exceptions=False) as client:  # type: ignore[arg-type]
        answer = client.post("/v1/models/big/import?filename=big.tar.gz", content=big.getvalue(), headers=OCTET)
    assert answer.status_code == 413 and "unpacks to more than 1000 bytes" in answer.json()["error"]["message"]


def test_the_route_is_in_the_openapi_schema_with_a_binary_body(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/models/{model}/import"]["post"]
    assert operation["requestBody"]["content"]["application/octet-stream"]["schema"]["format"] == "binary"
    assert operation["security"] == [{"bearer": []}]
    assert "201" in operation["responses"]
