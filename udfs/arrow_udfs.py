"""The vectorized Python functions behind the `ml` macros.

DuckDB calls each one with whole vectors (about 2,048 rows) as Arrow arrays; they hand the
columns to a `ModelClient` as one `pa.Table` and return one Arrow array, with no per-row Python
on the typed scoring path. Rows reach the generic `ml.predict` / `ml.explain` as JSON objects
(`to_json(row)`), which pyarrow parses into columns in one call.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from sqlml.bridge.client import ModelClient
from sqlml.bridge.manifest import Manifest, Signature
from sqlml.bridge.signature import arrow_type
from sqlml.bridge.wire import json_to_table
from sqlml.errors import InvalidInput, SqlmlError, close_names
from sqlml.sql.evaluation_rows import evaluation_rows
from sqlml.udfs.macros import DEFAULT_HORIZON, DEFAULT_QUANTILES

ArrowUdf = Callable[..., pa.Array]

CONTRIBUTION_TYPE = pa.struct(
    [pa.field("feature", pa.string()), pa.field("value", pa.float64()), pa.field("contribution", pa.float64())]
)
EVALUATION_ROW_TYPE = pa.struct([pa.field("metric", pa.string()), pa.field("value", pa.float64())])
FORECAST_ROW_TYPE = pa.struct(
    [
        pa.field("series", pa.string()),
        pa.field("ts", pa.timestamp("us")),
        pa.field("quantile", pa.string()),
        pa.field("value", pa.float64()),
    ]
)
MODEL_ROW_TYPE = pa.struct(
    [
        pa.field("name", pa.string()),
        pa.field("version", pa.int64()),
        pa.field("aliases", pa.map_(pa.string(), pa.int64())),
        pa.field("task", pa.string()),
        pa.field("metrics", pa.map_(pa.string(), pa.float64())),
        pa.field("loaded", pa.bool_()),
        pa.field("runtime", pa.string()),
        pa.field("signature", pa.string()),
    ]
)


@contextmanager
def errors_naming(model: str) -> Iterator[None]:
    """Let sqlml errors through as they are; give anything else the model's name."""
    try:
        yield
    except SqlmlError:
        raise
    except Exception as exc:
        raise SqlmlError(f'model "{model}" failed: {type(exc).__name__}: {str(exc)[:300]}') from exc


# -- typed scoring: ml.<model>(col1, col2, ...) --------------------------------------------------


def typed_predict(client: ModelClient, model: str, signature: Signature) -> ArrowUdf:
    """`__sqlml_predict_<model>(inputs...)`: the one output, or a struct of all outputs."""
    names = signature.input_names()
    outputs = signature.output_names()
    single = len(outputs) == 1

    def predict(*columns: pa.ChunkedArray) -> pa.Array:
        with errors_naming(model):
            result = client.predict(model, pa.Table.from_arrays(list(columns), names=names))
            if single:
                return result.column(0).combine_chunks()
            return struct_of(result.select(outputs))

    # DuckDB counts the Python parameters against the SQL ones: spell out one per input.
    predict.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(f"input_{i}", inspect.Parameter.POSITIONAL_ONLY) for i in range(len(names))]
    )
    return predict


def struct_of(table: pa.Table) -> pa.Array:
    """The table's columns as one struct array; a row whose fields are all NULL is a NULL struct."""
    arrays = [column.combine_chunks() for column in table.columns]
    all_null = pa.array([True] * table.num_rows, pa.bool_())
    for array in arrays:
        all_null = pc.and_(all_null, pc.is_null(array))
    return pa.StructArray.from_arrays(arrays, names=table.column_names, mask=all_null)


# -- generic: ml.predict(model, row) and ml.explain(model, row, top_k) ----------------------------


def predict_json(client: ModelClient) -> ArrowUdf:
    """`__sqlml_predict(model, row_json, strict)`: the outputs of each row as a JSON object."""

    def predict(models: pa.ChunkedArray, rows: pa.ChunkedArray, strict: pa.ChunkedArray) -> pa.Array:
        def one_group(key: tuple[Any, ...], group_rows: pa.Array) -> pa.Array:
            model, is_strict = key
            with errors_naming(model):
                manifest = client.describe(model)
                batch = rows_from_json(manifest, group_rows, strict=bool(is_strict))
                result = client.predict(model, batch)
                return outputs_as_json(result)

        return by_group([models, strict], rows.combine_chunks(), one_group, pa.string())

    return predict


def explain_json(client: ModelClient) -> ArrowUdf:
    """`__sqlml_explain(model, row_json, top_k, strict)`: the top_k feature contributions a row."""

    def explain(
        models: pa.ChunkedArray, rows: pa.ChunkedArray, top_k: pa.ChunkedArray, strict: pa.ChunkedArray
    ) -> pa.Array:
        def one_group(key: tuple[Any, ...], group_rows: pa.Array) -> pa.Array:
            model, k, is_strict = key
            with errors_naming(model):
                if k < 1:
                    raise InvalidInput(f"top_k must be a positive integer, got {k}", detail={"model": model})
                manifest = client.describe(model)
                batch = rows_from_json(manifest, group_rows, strict=bool(is_strict))
                result = client.explain(model, batch, int(k))
                return result.column("contributions").combine_chunks().cast(pa.list_(CONTRIBUTION_TYPE))

        return by_group([models, top_k, strict], rows.combine_chunks(), one_group, pa.list_(CONTRIBUTION_TYPE))

    return explain


def by_group(
    keys: Sequence[pa.ChunkedArray | pa.Array],
    rows: pa.Array,
    compute: Callable[[tuple[Any, ...], pa.Array], pa.Array],
    result_type: pa.DataType,
) -> pa.Array:
    """Run `compute` once per distinct key (usually one: the model name is a constant) and put the
    results back in row order."""
    valid = pc.is_valid(rows)
    for key in keys:
        valid = pc.and_(valid, pc.is_valid(key))
    if not pc.all(valid).as_py():  # NULL in, NULL out: compute on the complete rows only
        kept = pc.indices_nonzero(valid)
        if len(kept) == 0:
            return pa.nulls(len(rows), result_type)
        part = by_group([k.take(kept) for k in keys], rows.take(kept), compute, result_type)
        return _scatter(part, valid)
    key_table = pa.table({f"k{i}": key for i, key in enumerate(keys)})
    distinct = key_table.group_by(key_table.column_names, use_threads=False).aggregate([]).to_pylist()
    if len(distinct) == 1:
        return compute(tuple(distinct[0].values()), rows)
    positions, parts = [], []
    for key in distinct:
        mask = pa.array([True] * len(rows), pa.bool_())
        for name, value in key.items():
            mask = pc.and_(mask, pc.equal(key_table.column(name), value))
        indices = pc.indices_nonzero(mask)
        positions.append(indices)
        parts.append(compute(tuple(key.values()), rows.take(indices)))
    order = pc.sort_indices(pa.concat_arrays(positions))
    return pa.concat_arrays(parts).take(order)


def _scatter(values: pa.Array, keep: pa.Array) -> pa.Array:
    positions = pc.subtract(pc.cumulative_sum(pc.cast(keep, pa.int64())), 1)
    return values.take(pc.if_else(keep, positions, pa.scalar(None, pa.int64())))


def rows_from_json(manifest: Manifest, rows: pa.Array, strict: bool) -> pa.Table:
    """Parse JSON objects (one a row) into the model's input columns, naming any missing, extra or
    unparsable field."""
    model = manifest.name
    offsets = pa.array([0, len(rows)], pa.int32())
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, rows.cast(pa.string())), "\n")[0]
    data = joined.as_buffer() if joined.is_valid else pa.py_buffer(b"")
    options = pajson.ReadOptions(use_threads=False, block_size=max(1 << 20, data.size + 1))
    try:
        table = pajson.read_json(pa.BufferReader(data), read_options=options)
    except pa.ArrowInvalid as exc:
        raise InvalidInput(
            f'rows for model "{model}" must be structs or JSON objects with its input columns',
            hint=str(exc).splitlines()[0][:200],
            detail={"model": model},
        ) from None
    if table.num_rows != len(rows):
        raise InvalidInput(f'rows for model "{model}" must be structs or JSON objects', detail={"model": model})
    expected = manifest.signature.input_names()
    extra = [c for c in table.column_names if c not in expected]
    missing = [c for c in expected if c not in table.column_names]
    if missing:
        close = [name for m in missing for name in close_names(m, extra, limit=1)]
        raise InvalidInput(
            f'model "{model}" is missing input column{"s" if len(missing) > 1 else ""} '
            + ", ".join(f'"{c}"' for c in missing[:10])
            + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""),
            hint=f"the row has {', '.join(repr(c) for c in close)}: a typo?"
            if close
            else f"expected columns: {', '.join(expected[:12])}",
            detail={"model": model, "missing": missing, "expected": expected},
        )
    if extra and strict:
        close = close_names(extra[0], expected)
        raise InvalidInput(
            f'model "{model}" has no input column "{extra[0]}"',
            hint=f"did you mean {', '.join(repr(c) for c in close)}?"
            if close
            else "pass only the model's inputs, or use strict := false to ignore other fields",
            detail={"model": model, "column": extra[0], "expected": expected},
        )
    columns = [_parsed_column(model, c.name, table.column(c.name), c.type) for c in manifest.signature.inputs]
    return pa.Table.from_arrays(columns, names=expected)


def _parsed_column(model: str, name: str, values: pa.ChunkedArray, column_type: str) -> pa.ChunkedArray:
    # JSON has no timestamp type: DuckDB's to_json writes them as text, so parse them here.
    if column_type == "timestamp" and pa.types.is_string(values.type):
        try:
            return pc.cast(values, arrow_type("timestamp"))
        except pa.ArrowInvalid:
            raise InvalidInput(
                f'column "{name}" of model "{model}" must be a timestamp', detail={"model": model, "column": name}
            ) from None
    if column_type == "text" and not (pa.types.is_string(values.type) or pa.types.is_null(values.type)):
        raise InvalidInput(
            f'column "{name}" of model "{model}" must be text, got {values.type}',
            detail={"model": model, "column": name, "got": str(values.type)},
        )
    return values


def outputs_as_json(result: pa.Table) -> pa.Array:
    """One JSON object per row; NULL where every output is NULL (NULL in, NULL out)."""
    texts = [
        None if all(v is None for v in row.values()) else json.dumps(row, default=str) for row in result.to_pylist()
    ]
    return pa.array(texts, pa.string())


# -- evaluation -----------------------------------------------------------------------------------


def evaluate(client: ModelClient) -> ArrowUdf:
    """`__sqlml_evaluate(model, rows_json)`: (metric, value) pairs of the model on labelled rows.

    `rows_json` is the evaluation query's rows as one JSON list (the `ml.evaluate` macro builds it
    with `query()`); columns that are neither an input nor the target (keys, notes) are left out.
    A forecast model's rows (ts, series, value, covariates) go as they are."""

    def run(models: pa.ChunkedArray, rows_json: pa.ChunkedArray) -> pa.Array:
        results = []
        for model, text in zip(models.to_pylist(), rows_json.to_pylist(), strict=True):
            results.append(None if model is None or text is None else _evaluation(client, model, text))
        return pa.array(results, pa.list_(EVALUATION_ROW_TYPE))

    return run


def _evaluation(client: ModelClient, model: str, text: str) -> list[dict[str, Any]]:
    with errors_naming(model):
        manifest = client.describe(model)
        rows = json.loads(text)
        if manifest.task == "forecast":  # observations after the history: ts, series, value, covariates
            result = client.evaluate(model, json_to_table(None, rows)[0])
            return [{"metric": name, "value": value} for name, value in evaluation_rows(result)]
        target = str(manifest.lineage.get("target") or "")
        keep = {*manifest.signature.input_names(), target}
        rows = [{k: v for k, v in row.items() if k in keep} for row in rows]
        types = {c.name: arrow_type(c.type) for c in manifest.signature.inputs}
        labels = [row.pop(target, None) for row in rows]
        table, _ = json_to_table(None, rows, types)
        result = client.evaluate(model, table.append_column(target, pa.array(labels)))
    return [{"metric": name, "value": value} for name, value in evaluation_rows(result)]


# -- forecasts and the model list ------------------------------------------------------------------


def forecast(client: ModelClient) -> ArrowUdf:
    """`__sqlml_forecast(model, series, horizon, quantiles, future_json, history_json)`: the forecast
    rows as a list per call. `future_json` / `history_json` are the rows of the macro's `future` and
    `history` queries as one JSON list each (NULL: not given)."""

    def run(
        models: pa.ChunkedArray,
        series: pa.ChunkedArray,
        horizons: pa.ChunkedArray,
        quantiles: pa.ChunkedArray,
        futures: pa.ChunkedArray,
        histories: pa.ChunkedArray,
    ) -> pa.Array:
        done: dict[tuple[Any, ...], list[dict[str, Any]] | None] = {}
        results = []
        for model, one_series, horizon, wanted, future, history in zip(
            models.to_pylist(),
            series.to_pylist(),
            horizons.to_pylist(),
            quantiles.to_pylist(),
            futures.to_pylist(),
            histories.to_pylist(),
            strict=True,
        ):
            key = (model, one_series, horizon, tuple(wanted) if wanted is not None else None, future, history)
            if key not in done:
                done[key] = None if model is None else _forecast_rows(client, *key)
            results.append(done[key])
        return pa.array(results, pa.list_(FORECAST_ROW_TYPE))

    return run


def _rows_table(text: str | None, name: str) -> pa.Table | None:
    if text is None:
        return None
    rows = json.loads(text)
    if not isinstance(rows, list):
        raise InvalidInput(f"{name} must be a query whose rows are the {name} values")
    table, _shape = json_to_table(None, rows)
    return table


def _forecast_rows(
    client: ModelClient,
    model: str,
    series: str | None,
    horizon: int | None,
    quantiles: tuple[str, ...] | None,
    future: str | None = None,
    history: str | None = None,
) -> list[dict[str, Any]]:
    with errors_naming(model):
        table = client.forecast(
            model,
            None if series is None else [series],
            DEFAULT_HORIZON if horizon is None else int(horizon),
            list(quantiles) if quantiles is not None else list(DEFAULT_QUANTILES),
            _rows_table(future, "future"),
            _rows_table(history, "history"),
        )
        rows: list[dict[str, Any]] = (
            table.select(FORECAST_ROW_TYPE.names).cast(pa.schema(list(FORECAST_ROW_TYPE))).to_pylist()
        )
        return rows


def models(client: ModelClient) -> ArrowUdf:
    """`__sqlml_models()`: one list holding a struct per model."""

    def listing() -> pa.Array:
        rows = [
            {
                "name": m["name"],
                "version": m["version"],
                "aliases": list(m.get("aliases", {}).items()),
                "task": m.get("task"),
                "metrics": list(m.get("metrics", {}).items()),
                "loaded": bool(m.get("loaded", False)),
                "runtime": m.get("runtime"),
                "signature": json.dumps(m.get("signature", {})),
            }
            for m in client.models()
        ]
        return pa.array([rows], pa.list_(MODEL_ROW_TYPE))

    return listing
