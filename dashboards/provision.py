"""Provisioning of a local Superset for the sqlml dashboards: venv, metadata, assets, server lifecycle.

Used by `sqlml superset up/down/export` and by the browser tests. Superset gets its own virtual
environment (its pins, e.g. SQLAlchemy 1.4 and an older sqlglot, conflict with sqlml's); every
Superset command therefore runs as a subprocess of that venv, configured by
`dashboards/superset_config.py` through environment variables.

Assets live in `dashboards/assets/` in Superset's own export layout (databases/, datasets/,
charts/, dashboards/, metadata.yaml). The only field that depends on the machine is each database's
`sqlalchemy_uri`: `render_bundle` fills it in at import time, and `normalize_bundle` puts the
committed value back, so an export can be compared with the files (no drift).
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

DASHBOARDS_DIR = Path(__file__).resolve().parent
ASSETS_DIR = DASHBOARDS_DIR / "assets"
REQUIREMENTS_FILE = DASHBOARDS_DIR / "requirements-superset.txt"
CONFIG_FILE = DASHBOARDS_DIR / "superset_config.py"
BUNDLE_ROOT = "sqlml_dashboards"
POSTGRES_DATABASE_NAME = "sqlml PostgreSQL (live)"
DUCKDB_DATABASE_NAME = "sqlml DuckDB (snapshot)"
DEFAULT_ADMIN = ("admin", "admin")


class ProvisionError(RuntimeError):
    """A provisioning step failed; the message says which and how to look further."""


@dataclass(frozen=True)
class SupersetSite:
    """Where one local Superset keeps its things, and how to reach it."""

    home: Path  # metadata db, secret key, logs, pid file
    venv: Path
    host: str = "127.0.0.1"
    port: int = 8088
    admin_user: str = DEFAULT_ADMIN[0]
    admin_password: str = DEFAULT_ADMIN[1]
    rewrite_command: str = ""
    extra_env: Mapping[str, str] = field(default_factory=dict)
    base_url: str | None = None  # a Superset started elsewhere (docker-compose); else host:port

    @property
    def url(self) -> str:
        return (self.base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def superset_bin(self) -> Path:
        return self.venv / "bin" / "superset"

    @property
    def pid_file(self) -> Path:
        return self.home / "superset.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "superset.log"

    @property
    def metadata_db(self) -> Path:
        return self.home / "superset.db"


# --- the virtual environment --------------------------------------------------------------------


def requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS_FILE.read_bytes()).hexdigest()[:16]


def ensure_venv(venv: Path, log: io.TextIOBase | None = None) -> bool:
    """Create Superset's venv from `requirements-superset.txt` unless it is already current.

    Returns True when something was installed. A marker holding the requirements' digest makes
    this idempotent: a second call is a file read.
    """
    marker = venv / ".sqlml-requirements"
    if marker.exists() and marker.read_text().strip() == requirements_digest() and (venv / "bin/superset").exists():
        return False
    if not (venv / "bin/python").exists():
        _run([sys.executable, "-m", "venv", str(venv)], "create Superset's venv", log=log)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "-r", str(REQUIREMENTS_FILE)], "install Superset (pip)", log=log)
    marker.write_text(requirements_digest() + "\n")
    return True


# --- environment, metadata database -------------------------------------------------------------


def secret_key(home: Path) -> str:
    """SUPERSET_SECRET_KEY from the environment, else one generated once and kept private in `home`."""
    from_env = os.environ.get("SUPERSET_SECRET_KEY")
    if from_env:
        return from_env
    path = home / "secret_key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def superset_env(site: SupersetSite) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SUPERSET_CONFIG_PATH": str(CONFIG_FILE),
            "SUPERSET_SECRET_KEY": secret_key(site.home),
            "SQLML_SUPERSET_HOME": str(site.home),
            "FLASK_APP": "superset",
            "SQLML_REWRITE_COMMAND": site.rewrite_command,
            # gunicorn keeps a control socket under $HOME/.gunicorn; keep it with this site.
            "HOME": str(site.home),
            "PYTHONWARNINGS": "ignore",
        }
    )
    env.update(site.extra_env)
    return env


def init_metadata(site: SupersetSite, log: io.TextIOBase | None = None) -> bool:
    """Create Superset's metadata database, roles and admin user (skipped when already done).

    `superset db upgrade` + `superset init` take about two minutes on two cores; the first result is
    kept in the venv as a template and copied for every later site (tests start many).
    """
    site.home.mkdir(parents=True, exist_ok=True)
    done = site.home / f".initialized-{requirements_digest()}"
    if done.exists() and site.metadata_db.exists():
        return False
    template = site.venv / f"sqlml-metadata-template-{requirements_digest()}.db"
    if template.exists():
        shutil.copyfile(template, site.metadata_db)
    else:
        env = superset_env(site)
        _run([str(site.superset_bin), "db", "upgrade"], "superset db upgrade", env=env, log=log)
        _run([str(site.superset_bin), "init"], "superset init", env=env, log=log)
        shutil.copyfile(site.metadata_db, template)
    _ensure_admin(site, log)
    done.write_text("ok\n")
    return True


def _ensure_admin(site: SupersetSite, log: io.TextIOBase | None) -> None:
    env = superset_env(site)
    listed = subprocess.run(
        [str(site.superset_bin), "fab", "list-users"], env=env, capture_output=True, text=True, check=False
    )
    if f"username:{site.admin_user} " in listed.stdout or f"username:{site.admin_user}|" in listed.stdout:
        return
    command = [str(site.superset_bin), "fab", "create-admin", "--username", site.admin_user]
    command += ["--firstname", "sqlml", "--lastname", "admin", "--email", f"{site.admin_user}@localhost"]
    command += ["--password", site.admin_password]
    _run(command, "create the Superset admin", env=env, log=log)


# --- assets ---------------------------------------------------------------------------------------


def asset_files(assets_dir: Path = ASSETS_DIR) -> dict[str, str]:
    """Relative path -> YAML text of every committed asset."""
    return {path.relative_to(assets_dir).as_posix(): path.read_text() for path in sorted(assets_dir.rglob("*.yaml"))}


# Superset's dashboard import never overwrites the databases, datasets and charts it brings along,
# so each kind is imported through its own endpoint, dependencies first, each with overwrite on.
IMPORT_ORDER = (
    ("databases", "Database", ("databases/",)),
    ("datasets", "SqlaTable", ("databases/", "datasets/")),
    ("charts", "Slice", ("databases/", "datasets/", "charts/")),
    ("dashboards", "Dashboard", ("databases/", "datasets/", "charts/", "dashboards/")),
)
_ENDPOINTS = {"databases": "database", "datasets": "dataset", "charts": "chart", "dashboards": "dashboard"}


def render_bundle(
    database_uris: Mapping[str, str],
    assets_dir: Path = ASSETS_DIR,
    bundle_type: str = "Dashboard",
    prefixes: tuple[str, ...] = ("databases/", "datasets/", "charts/", "dashboards/"),
) -> bytes:
    """A ZIP that Superset's importers accept, with each database's URI for this machine.

    `database_uris` maps database_name to a SQLAlchemy URI; databases not named keep the committed URI.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        metadata = {"version": "1.0.0", "type": bundle_type, "timestamp": "2026-01-01T00:00:00+00:00"}
        bundle.writestr(f"{BUNDLE_ROOT}/metadata.yaml", yaml.safe_dump(metadata, sort_keys=False))
        for relative, text in asset_files(assets_dir).items():
            if not relative.startswith(prefixes):
                continue
            if relative.startswith("databases/"):
                document = yaml.safe_load(text)
                uri = database_uris.get(document["database_name"])
                if uri is not None:
                    document["sqlalchemy_uri"] = uri
                    text = yaml.safe_dump(document, sort_keys=False)
            bundle.writestr(f"{BUNDLE_ROOT}/{relative}", text)
    return buffer.getvalue()


def import_assets(site: SupersetSite, database_uris: Mapping[str, str]) -> None:
    """Import or overwrite databases, datasets, charts and dashboards from `dashboards/assets`.

    Goes through the running server's REST API: the CLI would boot a second Superset app (~1 minute).
    """
    with api_session(site) as client:
        for kind, bundle_type, prefixes in IMPORT_ORDER:
            bundle = render_bundle(database_uris, bundle_type=bundle_type, prefixes=prefixes)
            response = client.post(
                f"/api/v1/{_ENDPOINTS[kind]}/import/",
                files={"formData": ("sqlml_dashboards.zip", bundle, "application/zip")},
                data={"overwrite": "true"},
            )
            if response.status_code != 200:
                raise ProvisionError(f"Superset refused the {kind} ({response.status_code}): {response.text[:2000]}")


def committed_uris(assets_dir: Path = ASSETS_DIR) -> dict[str, str]:
    uris = {}
    for relative, text in asset_files(assets_dir).items():
        if relative.startswith("databases/"):
            document = yaml.safe_load(text)
            uris[document["database_name"]] = document["sqlalchemy_uri"]
    return uris


def normalize_bundle(zip_bytes: bytes, assets_dir: Path = ASSETS_DIR) -> dict[str, dict[str, object]]:
    """An exported bundle as {kind/uuid: document}, database URIs reset to the committed ones.

    Superset names exported files after object ids, which differ between instances, so files are
    matched by their `uuid`. Superset masks passwords on export; the URIs are machine-specific anyway.
    """
    uris = committed_uris(assets_dir)
    documents: dict[str, dict[str, object]] = {}
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as bundle:
        for name in bundle.namelist():
            parts = name.split("/", 1)
            if len(parts) != 2 or not parts[1].endswith(".yaml") or parts[1] == "metadata.yaml":
                continue
            document = yaml.safe_load(bundle.read(name))
            kind = parts[1].split("/", 1)[0]
            if kind == "databases":
                document["sqlalchemy_uri"] = uris.get(document["database_name"], document["sqlalchemy_uri"])
            documents[f"{kind}/{document['uuid']}"] = without_instance_ids(kind, document)
    return documents


def without_instance_ids(kind: str, document: dict[str, Any]) -> dict[str, Any]:
    """Drop the numeric ids an export carries next to the uuids (`N__table`, `chartId`), sort columns.

    They are row ids of one Superset's metadata database; on import Superset recomputes both from
    the uuids (dataset_uuid, meta.uuid), so the committed files keep neutral values instead.
    """
    if kind == "datasets":
        # Superset lists columns in its own row order; their order means nothing to a dataset.
        for key, name in (("columns", "column_name"), ("metrics", "metric_name")):
            if isinstance(document.get(key), list):
                document[key] = sorted(document[key], key=lambda item: str(item.get(name)))
    if kind == "charts" and isinstance(document.get("params"), dict):
        document["params"]["datasource"] = "__table"
    if kind == "dashboards" and isinstance(document.get("position"), dict):
        for component in document["position"].values():
            if (
                isinstance(component, dict)
                and isinstance(component.get("meta"), dict)
                and "chartId" in component["meta"]
            ):
                component["meta"]["chartId"] = 0
    return document


def committed_documents(assets_dir: Path = ASSETS_DIR) -> dict[str, dict[str, object]]:
    documents = {}
    for relative, text in asset_files(assets_dir).items():
        if relative == "metadata.yaml":
            continue
        document = yaml.safe_load(text)
        kind = relative.split("/", 1)[0]
        documents[f"{kind}/{document['uuid']}"] = without_instance_ids(kind, document)
    return documents


# --- the server -----------------------------------------------------------------------------------


def start(site: SupersetSite, timeout_s: float = 180.0) -> None:
    """Start Superset under gunicorn on site.host:site.port and wait until /health answers."""
    if is_running(site):
        return
    site.home.mkdir(parents=True, exist_ok=True)
    gunicorn = site.venv / "bin" / "gunicorn"
    command = [str(gunicorn), "--workers", "1", "--threads", "8", "--timeout", "180"]
    command += ["--bind", f"{site.host}:{site.port}", "--pid", str(site.pid_file), "superset.app:create_app()"]
    with site.log_file.open("ab") as log:
        process = subprocess.Popen(
            command, env=superset_env(site), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    site.pid_file.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProvisionError(f"Superset exited with {process.returncode} while starting; see {site.log_file}")
        if _healthy(site):
            return
        time.sleep(0.5)
    stop(site)
    raise ProvisionError(f"Superset did not answer {site.url}/health within {timeout_s:.0f} s; see {site.log_file}")


def is_running(site: SupersetSite) -> bool:
    pid = _pid(site)
    return pid is not None and _alive(pid) and _healthy(site)


def stop(site: SupersetSite, timeout_s: float = 20.0) -> bool:
    """Stop the Superset this site started (its own process group only). True if one was running."""
    pid = _pid(site)
    if pid is None or not _alive(pid):
        site.pid_file.unlink(missing_ok=True)
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    site.pid_file.unlink(missing_ok=True)
    return True


def _pid(site: SupersetSite) -> int | None:
    try:
        return int(site.pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        finished, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return finished == 0


def _healthy(site: SupersetSite) -> bool:
    try:
        return httpx.get(f"{site.url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


# --- the REST API (export) ------------------------------------------------------------------------


@contextmanager
def api_session(site: SupersetSite) -> Iterator[httpx.Client]:
    """An httpx client logged in to Superset's REST API (JWT bearer token, CSRF token for writes)."""
    with httpx.Client(base_url=site.url, timeout=300.0) as client:
        login = client.post(
            "/api/v1/security/login",
            json={"username": site.admin_user, "password": site.admin_password, "provider": "db", "refresh": False},
        )
        login.raise_for_status()
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        csrf = client.get("/api/v1/security/csrf_token/")
        csrf.raise_for_status()
        client.headers["X-CSRFToken"] = csrf.json()["result"]
        client.headers["Referer"] = site.url
        yield client


def export_dashboards(site: SupersetSite) -> bytes:
    """Superset's export ZIP of every dashboard (with their charts, datasets and databases)."""
    with api_session(site) as client:
        listing = client.get("/api/v1/dashboard/", params={"q": "(page_size:100)"})
        listing.raise_for_status()
        ids = [item["id"] for item in listing.json()["result"]]
        if not ids:
            raise ProvisionError("Superset has no dashboards to export")
        response = client.get("/api/v1/dashboard/export/", params={"q": "!(" + ",".join(map(str, ids)) + ")"})
        response.raise_for_status()
        return response.content


def write_assets(zip_bytes: bytes, assets_dir: Path = ASSETS_DIR) -> list[Path]:
    """Replace `assets_dir` with an export, file names without instance ids (used after editing in the UI)."""
    documents = normalize_bundle(zip_bytes, assets_dir) if assets_dir.exists() else {}
    if assets_dir.exists():
        shutil.rmtree(assets_dir)
    written = []
    for key, document in sorted(documents.items()):
        kind = key.split("/", 1)[0]
        path = assets_dir / kind / _asset_file_name(kind, document)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_yaml(document))
        written.append(path)
    metadata = assets_dir / "metadata.yaml"
    metadata.write_text(yaml.safe_dump({"version": "1.0.0", "type": "Dashboard"}, sort_keys=False))
    written.append(metadata)
    return written


class _AssetDumper(yaml.SafeDumper):
    """Multi-line strings (dataset SQL, descriptions) as literal blocks, so the files read like SQL."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_AssetDumper.add_representer(str, _represent_str)


def dump_yaml(document: Mapping[str, Any]) -> str:
    return yaml.dump(document, Dumper=_AssetDumper, sort_keys=False, allow_unicode=True, width=120)


def _asset_file_name(kind: str, document: Mapping[str, object]) -> str:
    title_key = {"databases": "database_name", "datasets": "table_name", "charts": "slice_name"}.get(
        kind, "dashboard_title"
    )
    title = str(document.get(title_key, document["uuid"]))
    words = "".join(ch if ch.isalnum() else " " for ch in title).split()
    return "_".join(words) + ".yaml"


# --- helpers --------------------------------------------------------------------------------------


def _run(
    command: list[str], what: str, *, env: Mapping[str, str] | None = None, log: io.TextIOBase | None = None
) -> None:
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if log is not None:
        log.write(completed.stdout + completed.stderr)
    if completed.returncode != 0:
        tail = (completed.stdout + completed.stderr).strip()[-2000:]
        raise ProvisionError(f"{what} failed (exit {completed.returncode}):\n{tail}")
