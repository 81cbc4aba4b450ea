"""Import dashboards/assets into a real Superset, export them again: the same documents come back."""

from __future__ import annotations

import difflib
from typing import Any

import pytest
import yaml


@pytest.mark.timeout(1200)  # on a clean machine this first test builds Superset's venv and metadata
def test_export_of_the_imported_assets_matches_the_files(provision: Any, offline_superset: Any) -> None:
    exported = provision.normalize_bundle(provision.export_dashboards(offline_superset))
    committed = provision.committed_documents()
    assert sorted(exported) == sorted(committed)
    drift = []
    for key in sorted(committed):
        if exported[key] != committed[key]:
            before = yaml.safe_dump(committed[key], sort_keys=True).splitlines()
            after = yaml.safe_dump(exported[key], sort_keys=True).splitlines()
            drift.append(f"{key}:\n" + "\n".join(difflib.unified_diff(before, after, lineterm="", n=1)))
    assert not drift, "Superset's export differs from dashboards/assets (run `sqlml superset export`):\n" + "\n".join(
        drift
    )


def test_reimporting_is_idempotent(provision: Any, offline_superset: Any) -> None:
    provision.import_assets(offline_superset, {})
    with provision.api_session(offline_superset) as client:
        counts = {
            kind: client.get(f"/api/v1/{kind}/", params={"q": "(page_size:100)"}).json()["count"]
            for kind in ("database", "dataset", "chart", "dashboard")
        }
    committed = provision.committed_documents()
    expected = {
        kind: sum(key.startswith(f"{folder}/") for key in committed)
        for kind, folder in (
            ("database", "databases"),
            ("dataset", "datasets"),
            ("chart", "charts"),
            ("dashboard", "dashboards"),
        )
    }
    assert counts == expected
