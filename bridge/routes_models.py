"""Model routes of the bridge: list and describe, predict / explain / forecast, lifecycle.

Predict and explain read their body by hand because it is either JSON (`columns` or `rows`) or
an Arrow IPC stream; the response takes the request's format (or Arrow when `Accept` asks for it).
Blocking work (registry reads, loading, inference) runs in worker threads, never on the event loop.
A request holds at most `max_request_rows` rows (413 before any model work); predict and explain
requests larger than a batch run in pieces that take turns with other callers, and their queued
pieces are dropped when the request times out or its client disconnects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread
import pyarrow as pa
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from sqlml.bridge import api_schemas as schemas
from sqlml.bridge import evaluation
from sqlml.bridge.auth import ADMIN, ANY_TOKEN, predict_scope
from sqlml.bridge.client import model_listing
from sqlml.bridge.host import LoadedModel
from sqlml.bridge.manifest import check_name
from sqlml.bridge.registry import ModelRef
from sqlml.bridge.signature import arrow_type
from sqlml.bridge.state import BridgeState, Receive, bridge_state
from sqlml.bridge.wire import ARROW_STREAM, Shape, is_arrow, json_to_table, read_ipc, table_to_json, write_ipc
from sqlml.errors import BadRequest, BridgeTimeout, InvalidInput, ModelNotFound, PayloadTooLarge

log = logging.getLogger("sqlml.bridge")

router = APIRouter(prefix="/v1/models", tags=["models"], responses=schemas.ERROR_RESPONSES)

T = TypeVar("T")
B = TypeVar("B", bound=BaseModel)


def _authorize(request: Request, needed: str) -> BridgeState:
    state = bridge_state(request)
    state.auth.require(request.headers.get("authorization"), needed)
    return state


async def _blocking(func: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(func, *args)


async def _within_timeout(state: BridgeState, model: str, work: Awaitable[T]) -> T:
    timeout = state.settings.request_timeout_s
    try:
        async with asyncio.timeout(timeout):  # no extra task per request, unlike wait_for
            return await work
    except TimeoutError:
        raise BridgeTimeout(
            f'model "{model}" did not answer within {timeout:g} s',
            hint="the bridge's request timeout is SQLML_REQUEST_TIMEOUT_S",
        ) from None


def _parse_json(body: bytes, model: type[B]) -> B:
    if not body:
        raise BadRequest("empty request body", hint=f"send JSON or an Arrow IPC stream ({ARROW_STREAM})")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise BadRequest(
                "request body is not valid JSON", hint=f"send JSON or an Arrow IPC stream ({ARROW_STREAM})"
            ) from None
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
        raise BadRequest(
            f"invalid request body: {where}: {errors[0]['msg'] if errors else exc}",
            detail={"errors": json.loads(json.dumps(errors, default=str))},
        ) from None


@dataclass(frozen=True)
class BatchCall:
    """What predict and explain need of an HTTP request: three headers, the body, and the ASGI
    `receive` that reports the client's disconnect once the body is read. Built from a Starlette
    request by the routes, or from the raw ASGI scope by `sqlml.bridge.predict_lane`."""

    authorization: str | None
    content_type: str | None
    accept: str
    body: bytes
    receive: Receive | None = None

    @classmethod
    async def of(cls, request: Request) -> BatchCall:
        headers, body = request.headers, await request.body()
        return cls(
            headers.get("authorization"), headers.get("content-type"), headers.get("accept", ""), body, request.receive
        )

    def wants_arrow(self, arrow_in: bool) -> bool:
        return arrow_in or ARROW_STREAM in self.accept


def _batch_response(model: LoadedModel, table: pa.Table, arrow: bool, shape: Shape | None) -> Response:
    m = model.manifest
    headers = {"X-Sqlml-Model": m.name, "X-Sqlml-Version": str(m.version)}
    if arrow:
        return Response(write_ipc(table), media_type=ARROW_STREAM, headers=headers)
    return JSONResponse(
        {"model": m.name, "version": m.version, **table_to_json(table, shape or "columns")}, headers=headers
    )


def _read_batch(
    state: BridgeState, call: BatchCall, model: LoadedModel, json_model: type[B]
) -> tuple[pa.Table, Shape | None, B | None]:
    if is_arrow(call.content_type):
        table, shape, payload = read_ipc(call.body), None, None
    else:
        payload = _parse_json(call.body, json_model)
        types = {c.name: arrow_type(c.type) for c in model.manifest.signature.inputs}
        table, shape = json_to_table(getattr(payload, "columns", None), getattr(payload, "rows", None), types)
    _check_rows(state, table)
    return table, shape, payload


def _check_rows(state: BridgeState, table: pa.Table) -> None:
    limit = state.settings.max_request_rows
    if table.num_rows > limit:
        raise PayloadTooLarge(
            f"request of {table.num_rows} rows exceeds the limit of {limit} rows per request",
            hint="send fewer rows per request, or raise the bridge's max_request_rows (SQLML_MAX_REQUEST_ROWS)",
            detail={"rows": table.num_rows, "max_request_rows": limit},
        )


class ClientGone(Exception):
    """The client disconnected before its answer was ready; its queued work was dropped."""


async def _unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """`work`'s result, or `ClientGone` (with `work` cancelled) if the client disconnects first.
    Costs a task per request, so the routes use it only for requests that run in several pieces."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this request times out: both are cancelled, and the work's pieces dropped
        watcher.cancel()
        task.cancel()
    if not task.done() or task.cancelled():
        raise ClientGone
    return task.result()


async def _disconnected(receive: Receive) -> None:
    try:
        while (await receive())["type"] != "http.disconnect":
            pass  # the body was read already: nothing else should arrive
    except Exception:  # a receive that fails says nothing about the client: wait for the work
        log.debug("receive failed while waiting for a disconnect", exc_info=True)
        await asyncio.Event().wait()


def _gone_reply(path: str) -> Response:
    log.info("client disconnected before %s was answered; its queued work was dropped", path)
    return Response(status_code=499)  # nginx's "client closed request": nobody reads it


# -- reading ---------------------------------------------------------------------------------


@router.get("", response_model=schemas.ModelList, response_model_exclude_unset=True, summary="List models")
async def list_models(request: Request) -> dict[str, Any]:
    """Every model with its default version, versions, aliases, signature and whether it is loaded;
    a model the store cannot describe (a corrupt manifest or aliases file) is listed with its
    `error` instead, and every other model as usual."""
    state = _authorize(request, ANY_TOKEN)
    authorization = request.headers.get("authorization")
    rows = await _blocking(model_listing, state.registry, state.host)
    return {"models": [row for row in rows if state.auth.can_see(authorization, str(row.get("name")))]}


@router.get("/{model}", response_model=schemas.ModelDetail, summary="Describe a model")
async def describe_model(model: str, request: Request) -> dict[str, Any]:
    """The manifest of the version `model` resolves to (`name`, `name:3`, `name:staging`)."""
    ref = ModelRef.parse(model)
    state = _authorize_to_see(request, ref.name)
    return await _blocking(_describe, state, ref, None)


@router.get("/{model}/versions/{version}", response_model=schemas.ModelDetail, summary="Describe a version")
async def describe_version(model: str, version: int, request: Request) -> dict[str, Any]:
    check_name(model)
    state = _authorize_to_see(request, model)
    return await _blocking(_describe, state, ModelRef(model), version)


def _authorize_to_see(request: Request, model: str) -> BridgeState:
    """A model's description (signature, metrics, lineage with its training query) is for tokens
    that may score or train it, as the listing shows only those models."""
    state = bridge_state(request)
    if not state.auth.can_see(request.headers.get("authorization"), model):
        state.auth.require(request.headers.get("authorization"), predict_scope(model))  # the 403
    return state


def _describe(state: BridgeState, ref: ModelRef, version: int | None) -> dict[str, Any]:
    registry = state.registry
    manifest = registry.manifest(ref.name, version) if version is not None else registry.describe(ref)
    return {
        "manifest": manifest,
        "versions": registry.versions(ref.name),
        "aliases": registry.aliases(ref.name),
        "loaded": [v for n, v in state.host.loaded() if n == ref.name],
        "pinned": ref.name in state.host.pinned(),
    }


# -- inference -------------------------------------------------------------------------------


async def _loaded_model(state: BridgeState, ref: ModelRef) -> LoadedModel:
    """A cache hit is answered on the event loop; a miss may load a model, so it runs in a thread."""
    model = state.host.get_if_loaded(ref)
    if model is None:
        model = await _blocking(state.host.get, ref)
    return model


@router.post(
    "/{model}/predict",
    summary="Predict",
    response_model=schemas.BatchResponse,
    responses=schemas.arrow_response("Outputs, one row per input row, in order", schemas.BatchResponse),
    openapi_extra=schemas.batch_request_body("PredictRequest"),
)
async def predict(model: str, request: Request) -> Response:
    """Score a batch. JSON `{"columns": {...}}` or `{"rows": [...]}`, or an Arrow IPC stream
    (`Content-Type: application/vnd.apache.arrow.stream`), answered in the same format."""
    return await answer_predict(bridge_state(request), model, await BatchCall.of(request))


async def answer_predict(state: BridgeState, model: str, call: BatchCall) -> Response:
    """The predict route's work, shared with the predict lane (which skips the framework's layers)."""
    ref = ModelRef.parse(model)
    state.auth.require(call.authorization, predict_scope(ref.name))
    started = time.perf_counter()
    loaded = await _loaded_model(state, ref)  # under load_timeout_s; the request timeout starts after

    async def work() -> Response:
        table, shape, _ = _read_batch(state, call, loaded, schemas.PredictRequest)
        predicted = state.batcher.predict(loaded, table)
        if call.receive is not None and table.num_rows > state.batcher.batch_rows(loaded):
            outputs = await _unless_disconnected(call.receive, predicted)
        else:
            outputs = await predicted
        m = loaded.manifest
        state.metrics.request(m.name, m.version, "predict", table.num_rows, time.perf_counter() - started)
        return _batch_response(loaded, outputs, call.wants_arrow(shape is None), shape)

    try:
        return await _within_timeout(state, ref.name, work())
    except ClientGone:
        return _gone_reply(f"predict on {ref.name}")


@router.post(
    "/{model}/explain",
    summary="Explain predictions",
    response_model=schemas.BatchResponse,
    responses=schemas.arrow_response("Per-row contributions, bias and margin", schemas.BatchResponse),
    openapi_extra=schemas.batch_request_body("ExplainRequest"),
)
async def explain(
    model: str,
    request: Request,
    top_k: int | None = Query(default=None, ge=1, le=10_000, description="for Arrow bodies"),
) -> Response:
    """Per-feature contributions (SHAP values for XGBoost) of each row's prediction."""
    ref = ModelRef.parse(model)
    state = _authorize(request, predict_scope(ref.name))
    started = time.perf_counter()
    call = await BatchCall.of(request)
    loaded = await _loaded_model(state, ref)

    async def work() -> Response:
        table, shape, payload = _read_batch(state, call, loaded, schemas.ExplainRequest)
        k = top_k or (payload.top_k if payload is not None else 5)
        explained = _explain_in_pieces(state, loaded, table, k)
        if call.receive is not None and table.num_rows > state.batcher.batch_rows(loaded):
            outputs = await _unless_disconnected(call.receive, explained)
        else:
            outputs = await explained
        m = loaded.manifest
        state.metrics.request(m.name, m.version, "explain", table.num_rows, time.perf_counter() - started)
        return _batch_response(loaded, outputs, call.wants_arrow(shape is None), shape)

    try:
        return await _within_timeout(state, ref.name, work())
    except ClientGone:
        return _gone_reply(f"explain on {ref.name}")


async def _explain_in_pieces(state: BridgeState, loaded: LoadedModel, table: pa.Table, top_k: int) -> pa.Table:
    """Explain a batch at most a predict batch of rows per runtime call, each call a turn of its
    own, so callers waiting for this model version take turns with a large request's pieces."""
    size = state.batcher.batch_rows(loaded)
    if table.num_rows <= size:
        return await state.turns.run(loaded, _explain, state, loaded, table, top_k)
    parts: list[pa.Table] = []
    for start in range(0, table.num_rows, size):
        parts.append(await state.turns.run(loaded, _explain, state, loaded, table.slice(start, size), top_k))
    return pa.concat_tables(parts)


def _explain(state: BridgeState, loaded: LoadedModel, table: pa.Table, top_k: int) -> pa.Table:
    return state.host.explain_loaded(loaded, table, top_k)


@router.post(
    "/{model}/forecast",
    summary="Forecast",
    response_model=schemas.ForecastResponse,
    responses=schemas.arrow_response(
        "Long-format forecast rows (Arrow when Accept asks for it)", schemas.ForecastResponse
    ),
)
async def forecast(model: str, body: schemas.ForecastRequest, request: Request) -> Response:
    """Rows of (series, ts, quantile, value) for `horizon` steps after each series' end: the end of
    the stored history, or of `history` when given. A model trained with covariates needs their
    values for each of those steps in `future`."""
    ref = ModelRef.parse(model)
    state = _authorize(request, predict_scope(ref.name))
    started = time.perf_counter()
    loaded = await _loaded_model(state, ref)

    async def work() -> Response:
        table = await state.turns.run(loaded, _forecast, state, loaded, body)
        m = loaded.manifest
        state.metrics.request(m.name, m.version, "forecast", table.num_rows, time.perf_counter() - started)
        return _batch_response(loaded, table, ARROW_STREAM in request.headers.get("accept", ""), "rows")

    return await _within_timeout(state, ref.name, work())


def _forecast(state: BridgeState, loaded: LoadedModel, body: schemas.ForecastRequest) -> pa.Table:
    future = None if body.future is None else json_to_table(None, body.future)[0]
    history = None if body.history is None else json_to_table(None, body.history)[0]
    for rows in (future, history):
        if rows is not None:
            _check_rows(state, rows)  # the same bound as every other request's rows (413)
    return state.host.forecast_loaded(loaded, body.series, body.horizon, body.quantiles, future, history)


@router.post(
    "/{model}/evaluate",
    summary="Evaluate on labelled rows",
    response_model=schemas.EvaluateResponse,
    response_model_exclude_none=True,
    openapi_extra=schemas.batch_request_body("EvaluateRequest"),
)
async def evaluate(model: str, request: Request) -> dict[str, Any]:
    """A version's metrics on rows that carry its inputs and its target column (JSON `columns` or
    `rows`, or an Arrow IPC stream): AUC, log loss, accuracy, precision/recall/F1 and the confusion
    matrix for classification; RMSE, MAE and R² for regression. A forecast model takes observations
    after its history (ts, [series,] value, covariates) and reports pinball loss, p10–p90 coverage
    and MAE against the seasonal naive."""
    ref = ModelRef.parse(model)
    state = _authorize(request, predict_scope(ref.name))
    started = time.perf_counter()
    call = await BatchCall.of(request)
    loaded = await _loaded_model(state, ref)

    async def work() -> dict[str, Any]:
        if loaded.manifest.task == "forecast":
            table = _read_observations(state, call)
        else:
            _plan, target = evaluation.target_of(loaded)
            table = _read_labelled(state, call, loaded, target)
        result = await state.turns.run(loaded, evaluation.evaluate, state.host, loaded, table)
        m = loaded.manifest
        state.metrics.request(m.name, m.version, "evaluate", table.num_rows, time.perf_counter() - started)
        return result

    return await _within_timeout(state, ref.name, work())


def _read_observations(state: BridgeState, call: BatchCall) -> pa.Table:
    """A forecast evaluation's rows as they came: ts, series, value and covariates, types inferred."""
    if is_arrow(call.content_type):
        table = read_ipc(call.body)
    else:
        payload = _parse_json(call.body, schemas.EvaluateRequest)
        table, _shape = json_to_table(payload.columns, payload.rows)
    _check_rows(state, table)
    return table


def _read_labelled(state: BridgeState, call: BatchCall, loaded: LoadedModel, target: str) -> pa.Table:
    """The inputs typed by the signature, plus the target column with its JSON types inferred; other
    columns (keys, notes) are left out, as `SELECT *` over a test table brings them."""
    keep = {*loaded.manifest.signature.input_names(), target}
    if is_arrow(call.content_type):
        table = read_ipc(call.body)
        table = table.select([c for c in table.column_names if c in keep])
    else:
        payload = _parse_json(call.body, schemas.EvaluateRequest)
        columns, rows = payload.columns, payload.rows
        if columns is not None:
            columns = {k: v for k, v in columns.items() if k in keep}
        if rows is not None:
            rows = [{k: v for k, v in row.items() if k in keep} for row in rows]
        if columns is not None:
            labels = columns.pop(target, None)
        else:
            has_target = rows is not None and any(target in row for row in rows)
            labels = [row.pop(target, None) for row in rows] if rows is not None and has_target else None
        if labels is None:
            raise InvalidInput(f'the rows have no target column "{target}" to compare with', detail={"target": target})
        types = {c.name: arrow_type(c.type) for c in loaded.manifest.signature.inputs}
        table, _shape = json_to_table(columns, rows, types)
        try:
            table = table.append_column(target, pa.array(labels))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            raise InvalidInput(
                f'the target column "{target}" must hold values of one type, one a row',
                detail={"target": target, "rows": table.num_rows, "targets": len(labels)},
            ) from None
    _check_rows(state, table)
    return table


# -- lifecycle (admin) -----------------------------------------------------------------------


def _known_model(state: BridgeState, name: str) -> str:
    check_name(name)
    if not state.registry.versions(name):
        raise ModelNotFound(name, state.registry.names())
    return name


@router.put("/{model}/aliases/{alias}", response_model=schemas.AliasesResponse, summary="Set an alias")
async def set_alias(model: str, alias: str, body: schemas.AliasRequest, request: Request) -> dict[str, Any]:
    """Point `alias` (e.g. `production`) at a version: promote, or roll forward or back."""
    state = _authorize(request, ADMIN)

    def run() -> dict[str, Any]:
        _known_model(state, model)
        return {"model": model, "aliases": state.registry.set_alias(model, alias, body.version)}

    return await _blocking(run)


@router.delete("/{model}/aliases/{alias}", response_model=schemas.AliasesResponse, summary="Remove an alias")
async def remove_alias(model: str, alias: str, request: Request) -> dict[str, Any]:
    state = _authorize(request, ADMIN)

    def run() -> dict[str, Any]:
        _known_model(state, model)
        check_name(alias, "alias")
        return {"model": model, "aliases": state.registry.remove_alias(model, alias)}

    return await _blocking(run)


@router.post("/{model}/rollback", response_model=schemas.RollbackResponse, summary="Roll an alias back")
async def rollback(model: str, body: schemas.RollbackRequest, request: Request) -> dict[str, Any]:
    """Move the alias to the newest version older than the one it points at."""
    state = _authorize(request, ADMIN)

    def run() -> dict[str, Any]:
        _known_model(state, model)
        check_name(body.alias, "alias")
        return {"alias": body.alias, "version": state.registry.rollback(model, body.alias)}

    return await _blocking(run)


@router.put("/{model}/pin", response_model=schemas.PinResponse, summary="Pin a model")
async def pin(model: str, request: Request) -> dict[str, Any]:
    """Load the model's default version now and never evict the model under memory pressure."""
    state = _authorize(request, ADMIN)

    def run() -> dict[str, Any]:
        _known_model(state, model)
        state.host.pin(model)
        state.host.get(ModelRef(model))
        return {"model": model, "pinned": True, "loaded": [v for n, v in state.host.loaded() if n == model]}

    return await _blocking(run)


@router.delete("/{model}/pin", response_model=schemas.PinResponse, summary="Unpin a model")
async def unpin(model: str, request: Request) -> dict[str, Any]:
    state = _authorize(request, ADMIN)

    def run() -> dict[str, Any]:
        _known_model(state, model)
        state.host.unpin(model)
        return {"model": model, "pinned": False, "loaded": [v for n, v in state.host.loaded() if n == model]}

    return await _blocking(run)
