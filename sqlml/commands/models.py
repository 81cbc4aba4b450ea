"""`sqlml models` (the listing) and `sqlml models import`: bring a model trained elsewhere.

`sqlml models import NAME PATH` publishes an XGBoost model file, a scikit-learn estimator or
Pipeline, or a transformers text-classification folder as the next version of NAME, with the
signature given (`--inputs`, `--outputs`) or inferred from the model (`sqlml.bridge.model_import`).
With `--bridge URL` it goes through `POST /v1/models/{name}/import` (a token with the `train`
scope; `admin` for scikit-learn, whose pickles run code when loaded); otherwise it is published
straight into `--store DIR` (default: the local store, `SQLML_STORE` or `$SQLML_HOME/models`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from sqlml import config
from sqlml.bridge.manifest import Manifest
from sqlml.errors import BadRequest, SqlmlError

models_app = typer.Typer(
    help="List the models in the store (or on the bridge); import models trained elsewhere.",
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


@models_app.callback()
def listing(
    context: typer.Context,
    bridge: Annotated[
        str | None, typer.Option("--bridge", help="bridge URL (default: run the models in this process)")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="bearer token for --bridge", envvar="SQLML_TOKEN")
    ] = None,
) -> None:
    """List the models in the store (or on the bridge): versions, aliases, metrics, loaded or not."""
    if context.invoked_subcommand is None:
        from sqlml.commands.embedded import models

        models(bridge, token)


@models_app.command("import")
def import_command(
    name: Annotated[str, typer.Argument(help="the model's name, e.g. churn")],
    path: Annotated[
        Path, typer.Argument(help="an XGBoost .json/.ubj file, a scikit-learn .joblib/.pkl, or a transformers folder")
    ],
    kind: Annotated[str | None, typer.Option(help="xgboost, sklearn or transformers (default: from PATH)")] = None,
    inputs: Annotated[str | None, typer.Option(help="the input columns, e.g. 'age double, plan text'")] = None,
    outputs: Annotated[str | None, typer.Option(help="the output columns (renames the inferred ones)")] = None,
    task: Annotated[str | None, typer.Option(help="classification, regression or text_classification")] = None,
    labels: Annotated[str | None, typer.Option(help="class labels in the model's order, e.g. 'no,yes'")] = None,
    target: Annotated[str | None, typer.Option(help="the column the model predicts (for ml.evaluate)")] = None,
    alias: Annotated[str | None, typer.Option(help="point this alias (e.g. production) at the new version")] = None,
    description: Annotated[str, typer.Option(help="what the model does, shown by \\df and ml.models()")] = "",
    bridge: Annotated[str | None, typer.Option("--bridge", help="import through this bridge")] = None,
    token: Annotated[str | None, typer.Option("--token", help="token for --bridge", envvar="SQLML_TOKEN")] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="publish into this store (default: the local one)")
    ] = None,
) -> None:
    """Publish a model trained elsewhere as the next version of NAME, checked by scoring one row."""
    from sqlml.commands.embedded import cli_errors

    with cli_errors():
        if bridge and store:
            raise BadRequest("--bridge and --store exclude each other", hint="import through a bridge, or into a store")
        if not path.exists():
            raise BadRequest(f"{path} does not exist")
        query: dict[str, str] = {
            key: value
            for key, value in {
                "kind": kind,
                "inputs": inputs,
                "outputs": outputs,
                "task": task,
                "labels": labels,
                "target": target,
                "alias": alias,
                "description": description,
            }.items()
            if value
        }
        if bridge:
            answer = _through_bridge(bridge, token, name, path, query)
            manifest, aliases = Manifest.model_validate(answer["manifest"]), answer["aliases"]
        else:
            manifest, aliases = _into_store(store or config.store_url(), name, path, query)
    typer.echo(f"imported {manifest.name} version {manifest.version} ({manifest.runtime}, {manifest.task})")
    typer.echo("  inputs:  " + ", ".join(f"{c.name} {c.type}" for c in manifest.signature.inputs))
    typer.echo("  outputs: " + ", ".join(f"{c.name} {c.type}" for c in manifest.signature.outputs))
    if aliases:
        typer.echo("  aliases: " + ", ".join(f"{a}→{v}" for a, v in sorted(aliases.items())))


def _into_store(store: str, name: str, path: Path, query: dict[str, str]) -> tuple[Manifest, dict[str, int]]:
    from sqlml.bridge.model_import import ImportOptions, import_model, parse_columns, parse_labels
    from sqlml.bridge.registry import Registry

    options = ImportOptions(
        kind=query.get("kind"),
        inputs=parse_columns(query["inputs"], "inputs") if "inputs" in query else None,
        outputs=parse_columns(query["outputs"], "outputs") if "outputs" in query else None,
        task=query.get("task"),
        labels=parse_labels(query["labels"]) if "labels" in query else None,
        target=query.get("target", ""),
        description=query.get("description", ""),
        source=path.name,
    )
    registry = Registry(store)
    manifest = import_model(registry, name, path, options, query.get("alias"))
    return manifest, registry.aliases(name)


def _through_bridge(bridge: str, token: str | None, name: str, path: Path, query: dict[str, str]) -> dict[str, Any]:
    from sqlml.bridge.model_archive import pack_artifact

    body, filename = pack_artifact(path)
    headers = {"Content-Type": "application/octet-stream", **({"Authorization": f"Bearer {token}"} if token else {})}
    url = f"{bridge.rstrip('/')}/v1/models/{name}/import"
    try:
        response = httpx.post(url, content=body, params={**query, "filename": filename}, headers=headers, timeout=300)
    except httpx.HTTPError as exc:
        raise SqlmlError(f"cannot reach the bridge at {bridge}: {exc}", hint="is `sqlml serve` running?") from None
    if response.status_code >= 400:
        try:
            payload = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            payload = {"code": "internal_error", "message": response.text[:500]}
        raise SqlmlError.from_dict(payload, response.status_code)
    answer: dict[str, Any] = response.json()
    return answer
