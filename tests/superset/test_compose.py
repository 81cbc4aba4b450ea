"""docker-compose.yml against the Compose Specification, and against the files it refers to.

No Docker engine runs here. The file is checked by `compose-spec` (PyPI; Rust bindings of the
`compose_spec` crate, which rejects unknown keys and wrong types, plus Pydantic models of the
official JSON schema), after YAML anchors and merge keys are resolved the way Compose resolves
them. The rest are the cross-references a schema cannot see.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from compose_spec import PyCompose

from tests.superset.stack import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
EXPECTED_SERVICES = {"postgres", "bridge", "bridge-lb", "superset", "ray-head", "ray-gpu-worker"}


def validated(document: dict[str, Any]) -> PyCompose:
    compose = PyCompose.from_json(json.dumps(document))
    compose.to_spec()  # the Pydantic models of the schema
    return compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    validated(document)
    return document


def test_the_validator_is_not_vacuous(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["bridge"]["healthcheck"]["intervall"] = "5s"
    with pytest.raises(ValueError, match="intervall"):
        validated(broken)
    broken = json.loads(json.dumps(compose))
    broken["services"]["bridge"]["deploy"]["replicas"] = "two"
    with pytest.raises(ValueError):
        validated(broken)


def test_services_each_with_a_health_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == EXPECTED_SERVICES
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no health check"


def test_dependencies_exist_and_wait_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            assert condition["condition"] == "service_healthy", (name, dependency)


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes", {}))
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, (name, source)
            else:
                assert (REPO / source).exists(), (name, source)


def test_bridge_replicas_share_one_store_behind_one_address(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["bridge"]["deploy"]["replicas"] >= 2
    assert "models:/models" in services["bridge"]["volumes"]
    assert "ports" not in services["bridge"]  # replicas are reached through the balancer only
    balancer = (REPO / "docker" / "bridge-lb.conf").read_text()
    assert re.search(r"server bridge:8765 resolve;", balancer)
    assert services["superset"]["environment"]["SQLML_BRIDGE_URL"] == "http://bridge-lb:8765"


def test_gpu_worker_reserves_a_gpu_and_joins_the_head(compose: dict[str, Any]) -> None:
    worker = compose["services"]["ray-gpu-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device["capabilities"] and device.get("count", 0) >= 1 for device in devices)
    assert "--address=ray-head:6379" in worker["command"]


def dockerfile_copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "COPY" and not any(p.startswith("--from") for p in parts):
            sources.extend(p for p in parts[1:-1] if not p.startswith("--"))
    return sources


def test_dockerfiles_and_what_they_copy_exist(compose: dict[str, Any]) -> None:
    built_images = {}
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is None:
            continue
        dockerfile = REPO / build["context"] / build["dockerfile"]
        assert dockerfile.exists(), (name, dockerfile)
        for source in dockerfile_copy_sources(dockerfile):
            assert (REPO / build["context"] / source).exists(), (name, source)
        base = re.search(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
        assert base is not None
        if base.group(1) == "sqlml":  # built on the sqlml image, handed over as a build context
            assert build["additional_contexts"]["sqlml"] == "service:bridge", name
        built_images[name] = service["image"]
    # The worker runs the image the head builds.
    assert compose["services"]["ray-gpu-worker"]["image"] == built_images["ray-head"]


def test_superset_is_healthy_only_once_provisioned() -> None:
    entrypoint = REPO / "docker" / "superset-entrypoint.sh"
    subprocess.run(["sh", "-n", str(entrypoint)], check=True)
    script = entrypoint.read_text()
    assert "sqlml superset provision" in script
    assert script.index("sqlml superset provision") < script.index('touch "$SQLML_SUPERSET_HOME/provisioned"')
    dockerfile = (REPO / "docker" / "superset.Dockerfile").read_text()
    assert "dashboards/requirements-superset.txt" in dockerfile
    assert "test -f /var/lib/superset/provisioned" in dockerfile


def test_postgres_image_installs_the_extension_and_creates_the_database() -> None:
    dockerfile = (REPO / "docker" / "postgres.Dockerfile").read_text()
    assert "postgresql-plpython3-15" in dockerfile and "make -C /usr/src/sqlml/extension install" in dockerfile
    # The helper's build reads every module it concatenates: the image must hold each of them.
    sys.path.insert(0, str(REPO / "extension"))
    from build_helper import MODULES

    copied = re.findall(r"^COPY (\S+)/ /usr/src/sqlml/\1/$", dockerfile, re.M)
    assert {m.split("/")[0] for m in MODULES} <= set(copied), copied
    assert "python3" in dockerfile
    init = (REPO / "docker" / "postgres-init.sql").read_text()
    assert "CREATE EXTENSION sqlml;" in init and "sqlml.bridge_url = 'http://bridge:8765'" in init
    assert "CASCADE" not in init


SUPERSET_ROLE = "sqlml_superset"
ROLE_PASSWORD = "${SQLML_SUPERSET_DB_PASSWORD:?set SQLML_SUPERSET_DB_PASSWORD}"


def test_superset_connects_as_the_least_privilege_role(compose: dict[str, Any]) -> None:
    environment = compose["services"]["superset"]["environment"]
    assert environment["SQLML_SUPERSET_DB_ROLE"] == SUPERSET_ROLE != "postgres"
    # A password of its own, from the environment (required), shared with postgres for the init script only.
    assert environment["SQLML_SUPERSET_DB_PASSWORD"] == ROLE_PASSWORD
    assert compose["services"]["postgres"]["environment"]["SQLML_SUPERSET_DB_PASSWORD"] == ROLE_PASSWORD
    assert "POSTGRES_PASSWORD" not in environment["SQLML_SUPERSET_DB_PASSWORD"]
    # The URI Superset is given: the committed asset, with the role as its user.
    uri = urlsplit(committed_postgres_uri())
    assert (uri.username, uri.hostname, uri.path) == (SUPERSET_ROLE, "postgres", "/sqlml_demo")


def test_only_the_provisioning_step_holds_the_superuser_password(compose: dict[str, Any]) -> None:
    holders = {
        name
        for name, service in compose["services"].items()
        if any("POSTGRES_PASSWORD" in str(value) for value in service.get("environment", {}).values())
    }
    assert holders == {"postgres", "superset"}
    script = (REPO / "docker" / "superset-entrypoint.sh").read_text()
    server = next(line for line in script.splitlines() if "bin/gunicorn" in line)
    assert server.startswith("env -u PGUSER -u PGPASSWORD ")  # the server itself never sees them
    assert '--superset-role "${SQLML_SUPERSET_DB_ROLE:-sqlml_superset}"' in script


def test_the_init_script_creates_the_role_superset_uses() -> None:
    init = (REPO / "docker" / "postgres-init.sql").read_text()
    assert "CREATE ROLE sqlml_superset" in init and "GRANT sqlml_user TO sqlml_superset;" in init
    assert "\\getenv superset_password SQLML_SUPERSET_DB_PASSWORD" in init
    code = "\n".join(line for line in init.splitlines() if not line.lstrip().startswith("--"))
    assert "sqlml_admin" not in code and "SUPERUSER" not in code.replace("NOSUPERUSER", "")
    # The real memberships are checked against PostgreSQL in tests/security/test_superset_role.py.


def committed_postgres_uri() -> str:
    from sqlml.commands.superset import dashboards_module

    provision = dashboards_module("provision")
    return str(provision.committed_uris()[provision.POSTGRES_DATABASE_NAME])


def test_bridge_health_checks_use_a_route_the_bridge_serves(compose: dict[str, Any]) -> None:
    from sqlml.bridge.app import create_app

    routes = {getattr(route, "path", None) for route in create_app().routes}
    checks = [" ".join(compose["services"][name]["healthcheck"]["test"]) for name in ("bridge", "bridge-lb")]
    checks.append((REPO / "docker" / "bridge.Dockerfile").read_text())
    for check in checks:
        paths = re.findall(r"127\.0\.0\.1:8765(/[a-z]+)", check)
        assert paths and all(path in routes for path in paths), (paths, check[-200:])
