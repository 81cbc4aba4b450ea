"""The committed Superset assets hang together, call ml.*, and bundle the way Superset imports them."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import yaml

EXPECTED_DASHBOARDS = {"Customer sentiment", "Lead pipeline", "Energy forecast"}


def documents(provision: Any, kind: str) -> list[dict[str, Any]]:
    return [doc for key, doc in provision.committed_documents().items() if key.startswith(f"{kind}/")]


def test_three_dashboards_whose_charts_and_datasets_exist(provision: Any) -> None:
    dashboards = documents(provision, "dashboards")
    assert {d["dashboard_title"] for d in dashboards} == EXPECTED_DASHBOARDS
    chart_uuids = {c["uuid"] for c in documents(provision, "charts")}
    dataset_uuids = {d["uuid"] for d in documents(provision, "datasets")}
    database_uuids = {d["uuid"] for d in documents(provision, "databases")}
    placed = set()
    for dashboard in dashboards:
        for component in dashboard["position"].values():
            if isinstance(component, dict) and component.get("type") == "CHART":
                assert component["meta"]["uuid"] in chart_uuids, component
                placed.add(component["meta"]["uuid"])
    assert placed == chart_uuids  # no orphan chart
    assert {c["dataset_uuid"] for c in documents(provision, "charts")} <= dataset_uuids
    assert {d["database_uuid"] for d in documents(provision, "datasets")} == database_uuids


def test_every_dataset_gets_its_rows_from_ml_functions(provision: Any) -> None:
    for dataset in documents(provision, "datasets"):
        assert "ml." in dataset["sql"], dataset["table_name"]
    live = [d for d in documents(provision, "datasets") if "live" in d["description"]]
    assert {d["table_name"] for d in live} == {"review_sentiment", "lead_scores", "top_leads"}


def test_chart_columns_exist_in_their_dataset(provision: Any) -> None:
    columns = {d["uuid"]: {c["column_name"] for c in d["columns"]} for d in documents(provision, "datasets")}
    for chart in documents(provision, "charts"):
        params = chart["params"]
        used = set(params.get("all_columns", [])) | set(params.get("groupby", []))
        used |= {params[key] for key in ("x_axis", "column") if key in params}
        used |= {f["subject"] for f in params.get("adhoc_filters", [])}
        assert used <= columns[chart["dataset_uuid"]], (chart["slice_name"], used - columns[chart["dataset_uuid"]])


def test_bundle_carries_this_machines_uris_and_the_right_bundle_type(provision: Any) -> None:
    uri = "duckdb:////tmp/somewhere/superset.duckdb?access_mode=read_only"
    bundle = provision.render_bundle(
        {provision.DUCKDB_DATABASE_NAME: uri}, bundle_type="SqlaTable", prefixes=("databases/", "datasets/")
    )
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        names = archive.namelist()
        metadata = yaml.safe_load(archive.read(f"{provision.BUNDLE_ROOT}/metadata.yaml"))
        databases = [yaml.safe_load(archive.read(n)) for n in names if "/databases/" in n]
    assert metadata["type"] == "SqlaTable"
    assert not any("/charts/" in n or "/dashboards/" in n for n in names)
    uris = {d["database_name"]: d["sqlalchemy_uri"] for d in databases}
    assert uris[provision.DUCKDB_DATABASE_NAME] == uri
    assert uris[provision.POSTGRES_DATABASE_NAME] == provision.committed_uris()[provision.POSTGRES_DATABASE_NAME]


def test_normalizing_a_bundle_restores_the_committed_documents(provision: Any) -> None:
    bundle = provision.render_bundle({provision.DUCKDB_DATABASE_NAME: "duckdb:////elsewhere.duckdb"})
    assert provision.normalize_bundle(bundle) == provision.committed_documents()


def test_asset_files_are_written_the_way_they_are_committed(provision: Any) -> None:
    # `sqlml superset export` rewrites the folder with dump_yaml: a no-op on the committed files.
    for relative, text in provision.asset_files().items():
        if relative != "metadata.yaml":
            assert provision.dump_yaml(yaml.safe_load(text)) == text, relative
