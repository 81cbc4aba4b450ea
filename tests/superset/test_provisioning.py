"""Provisioning steps are idempotent and cheap the second time: what makes `sqlml superset up` re-runnable."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import Any

import pytest


def test_venv_is_not_reinstalled_when_current(provision: Any, superset_venv: Path) -> None:
    started = time.monotonic()
    assert provision.ensure_venv(superset_venv) is False
    assert time.monotonic() - started < 1.0


def test_metadata_is_copied_from_the_template_once(
    provision: Any, superset_venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SUPERSET_SECRET_KEY", raising=False)
    site = provision.SupersetSite(home=tmp_path / "superset", venv=superset_venv)
    provision.init_metadata(site)  # may build the template on a fresh venv
    fresh = provision.SupersetSite(home=tmp_path / "again", venv=superset_venv)
    started = time.monotonic()
    assert provision.init_metadata(fresh) is True
    assert time.monotonic() - started < 60  # a copy plus the admin check, not two minutes of migrations
    assert provision.init_metadata(fresh) is False
    key_file = fresh.home / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert provision.secret_key(fresh.home) == key_file.read_text().strip()


def test_stopping_a_site_that_never_started_is_harmless(provision: Any, tmp_path: Path) -> None:
    site = provision.SupersetSite(home=tmp_path, venv=tmp_path / "venv")
    assert provision.stop(site) is False
    assert provision.is_running(site) is False
