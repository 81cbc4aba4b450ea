"""Uploads: training rows a client streams to the bridge, kept until the one job that reads them ends.

The PostgreSQL extension runs the caller's query with the caller's own privileges and sends the
rows here, so the bridge never connects to the caller's database. An upload is a folder
`<job store folder>/uploads/<id>/` holding `schema.arrow` (the declared columns, an Arrow IPC
file with no rows) and one Arrow IPC file per chunk of rows (`chunk-000001.arrow`, ...), plus
`rows.json` with the running totals. Columns are declared by PostgreSQL type OID and read with
the same Arrow types as a PostgreSQL source (`sources.PG_TYPES`); rows arrive as JSON objects as
`row_to_json` writes them.

Bounds: `max_bytes` of Arrow data per upload (413); a value that does not convert is a 400 that
names its column and row, never the value. An upload is deleted when its job ends (`JobStore.finish`
calls `remove_upload`) and by `sweep` once it is an hour old and no live job names it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from sqlml.errors import BadRequest, NotFound, PayloadTooLarge

DEFAULT_MAX_BYTES = 1024**3
SWEEP_AGE_S = 3600.0
OWNER_FILE = "owner"  # a fingerprint of the token that created the upload
SCHEMA_FILE = "schema.arrow"
TOTALS_FILE = "rows.json"
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError, OverflowError)
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class UploadColumn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    pg_type: int = Field(ge=0, description="the PostgreSQL type OID; unknown types are read as text")


class NewUpload(BaseModel):
    """`POST /v1/uploads`: the columns of the rows that will follow."""

    model_config = ConfigDict(extra="forbid")

    columns: list[UploadColumn] = Field(min_length=1, max_length=1600)


class UploadRows(BaseModel):
    """`POST /v1/uploads/{id}/rows`: one chunk of rows, JSON objects keyed by column name."""

    model_config = ConfigDict(extra="forbid")

    rows: list[dict[str, Any]] = Field(max_length=1_000_000)


def upload_schema(columns: list[UploadColumn]) -> pa.Schema:
    """The Arrow schema of declared columns; duplicate names are a 400."""
    from sqlml.bridge.jobs.sources import arrow_type_of_oid

    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BadRequest(f"the upload names columns twice: {', '.join(duplicates)}", detail={"columns": duplicates})
    return pa.schema([pa.field(c.name, arrow_type_of_oid(c.pg_type)) for c in columns])


class UploadStore:
    """The uploads of one bridge, under `root` (the job store's `uploads/` folder)."""

    def __init__(self, root: str | Path, max_bytes: int = DEFAULT_MAX_BYTES):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # chunks of one upload are appended one at a time

    def create(self, columns: list[UploadColumn], owner: str = "") -> str:
        """A new empty upload with these columns, for the caller `owner` names (a fingerprint of its
        token); returns its id."""
        schema = upload_schema(columns)
        upload_id = secrets.token_hex(16)
        folder = self.root / upload_id
        folder.mkdir(parents=True)
        (folder / OWNER_FILE).write_text(owner)
        _write_ipc(folder / SCHEMA_FILE, schema, [])
        _write_totals(folder, rows=0, chunks=0, size=0)
        return upload_id

    def append(self, upload_id: str, rows: list[dict[str, Any]]) -> int:
        """Add one chunk of rows; returns the rows in the upload so far."""
        folder = self._folder(upload_id)
        with self._lock:
            totals = _read_totals(folder)
            batch = rows_to_batch(rows, self.schema(upload_id), first_row=totals["rows"] + 1)
            if batch.num_rows == 0:
                return int(totals["rows"])
            size = batch.nbytes + int(totals["bytes"])
            if size > self.max_bytes:
                raise PayloadTooLarge(
                    f"upload {upload_id} would exceed the limit of {self.max_bytes} bytes",
                    hint="train on fewer rows or columns, or raise the bridge setting max_upload_bytes",
                    detail={"limit_bytes": self.max_bytes},
                )
            chunk = int(totals["chunks"]) + 1
            rows_so_far = int(totals["rows"]) + int(batch.num_rows)
            _write_ipc(folder / f"chunk-{chunk:06d}.arrow", batch.schema, [batch])
            _write_totals(folder, rows=rows_so_far, chunks=chunk, size=size)
            return rows_so_far

    def check_owner(self, upload_id: str, owner: str) -> None:
        """Only the caller that created an upload may add to it or train on it; to anyone else it
        does not exist (the same 404 as an unknown id)."""
        folder = self._folder(upload_id)
        try:
            created_by = (folder / OWNER_FILE).read_text()
        except OSError:
            created_by = None
        if created_by is None or not hmac.compare_digest(created_by, owner):
            raise _not_found(upload_id)

    def schema(self, upload_id: str) -> pa.Schema:
        with pa.memory_map(str(self._folder(upload_id) / SCHEMA_FILE)) as source:
            schema: pa.Schema = pa.ipc.open_file(source).schema
        return schema

    def rows(self, upload_id: str) -> int:
        return int(_read_totals(self._folder(upload_id))["rows"])

    def batches(self, upload_id: str) -> Iterator[pa.RecordBatch]:
        """The upload's rows, chunk by chunk, in the order they arrived."""
        for path in sorted(self._folder(upload_id).glob("chunk-*.arrow")):
            with pa.memory_map(str(path)) as source:
                reader = pa.ipc.open_file(source)
                for index in range(reader.num_record_batches):
                    yield reader.get_batch(index)

    def remove(self, upload_id: str) -> None:
        remove_upload(self.root, upload_id)

    def sweep(self, referenced: Collection[str], max_age_s: float = SWEEP_AGE_S) -> list[str]:
        """Delete uploads older than `max_age_s` that no live job names; returns their ids."""
        if not self.root.is_dir():
            return []
        cutoff = time.time() - max_age_s
        swept = []
        for folder in self.root.iterdir():
            if folder.name not in referenced and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                swept.append(folder.name)
        return swept

    def _folder(self, upload_id: str) -> Path:
        folder = self.root / upload_id
        if not _UPLOAD_ID.match(upload_id) or not (folder / TOTALS_FILE).is_file():
            raise _not_found(upload_id)
        return folder


def _not_found(upload_id: str) -> NotFound:
    return NotFound(
        f'upload "{upload_id[:40]}" not found',
        hint="uploads are deleted when their job ends and after an hour unused; upload the rows again",
        detail={"upload": upload_id[:40]},
    )


def owner_of(authorization: str | None) -> str:
    """The fingerprint an upload records of the token that created it ('' with auth off)."""
    token = (authorization or "").partition(" ")[2].strip()
    return hashlib.sha256(token.encode()).hexdigest()[:32] if token else ""


def remove_upload(root: str | Path, upload_id: str) -> None:
    """Delete one upload's folder, if it is there (ids that are not upload ids are ignored)."""
    if _UPLOAD_ID.match(upload_id):
        shutil.rmtree(Path(root) / upload_id, ignore_errors=True)


# -- JSON rows -> Arrow ----------------------------------------------------------------------------


def rows_to_batch(rows: list[dict[str, Any]], schema: pa.Schema, first_row: int = 1) -> pa.RecordBatch:
    """One record batch of `schema` from `row_to_json` objects; row numbers in errors start at `first_row`."""
    names = set(schema.names)
    for index, row in enumerate(rows):
        if set(row) != names:
            raise BadRequest(
                f"row {first_row + index} does not have exactly the upload's columns",
                detail={"row": first_row + index, "columns": schema.names},
            )
    arrays = [_column(f, [row[f.name] for row in rows], first_row) for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _column(arrow_field: pa.Field, values: list[Any], first_row: int) -> pa.Array:
    try:
        return _convert(values, arrow_field.type)
    except _CONVERSION_ERRORS:
        row = first_row + _first_bad(values, arrow_field.type)
        raise BadRequest(
            f'column "{arrow_field.name}", row {row}: the value is not a valid {arrow_field.type}',
            hint="send values as row_to_json writes them",
            detail={"column": arrow_field.name, "row": row, "type": str(arrow_field.type)},
        ) from None


def _first_bad(values: list[Any], arrow_type: pa.DataType) -> int:
    for index, value in enumerate(values):
        try:
            _convert([value], arrow_type)
        except _CONVERSION_ERRORS:
            return index
    return 0


def _convert(values: list[Any], arrow_type: pa.DataType) -> pa.Array:
    if pa.types.is_string(arrow_type):
        return pa.array([_text(v) for v in values], type=arrow_type)
    if pa.types.is_temporal(arrow_type):
        return pc.cast(pa.array([_iso_text(v) for v in values], type=pa.string()), arrow_type)
    check = _CHECKS[arrow_type.id]
    return pa.array([None if v is None else check(v) for v in values], type=arrow_type)


def _text(value: Any) -> str | None:
    # arrays, composites and json arrive as JSON values: keep them as JSON text
    return value if value is None or isinstance(value, str) else json.dumps(value)


def _iso_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError("dates and timestamps arrive as ISO strings")


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("not an integer")
    return value


def _number(value: Any) -> float:
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return float(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("not a boolean")
    return value


_CHECKS: dict[int, Callable[[Any], Any]] = {
    pa.int64().id: _integer,
    pa.float64().id: _number,
    pa.bool_().id: _boolean,
}


# -- files -----------------------------------------------------------------------------------------


def _write_ipc(path: Path, schema: pa.Schema, batches: list[pa.RecordBatch]) -> None:
    partial = path.with_suffix(".partial")
    with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    partial.rename(path)  # a reader never sees half a chunk


def _read_totals(folder: Path) -> dict[str, int]:
    totals: dict[str, int] = json.loads((folder / TOTALS_FILE).read_text())
    return totals


def _write_totals(folder: Path, *, rows: int, chunks: int, size: int) -> None:
    partial = folder / f"{TOTALS_FILE}.partial"
    partial.write_text(json.dumps({"rows": rows, "chunks": chunks, "bytes": size}))
    partial.replace(folder / TOTALS_FILE)
