"""Dynamic batching: concurrent predict requests to one model version share one runtime call, and
large requests share the model fairly with everyone else's.

Each request is validated on its own (so a bad request fails alone), then queued for its model
version. One worker per version forms a batch of at most `max_batch_size` rows from the queued
requests, round-robin: a request larger than a batch is cut into pieces as it is served, a piece
at a time, and goes back to the end of the queue after each piece. A piece is one batch of rows,
or, for a model fast enough to score more rows than that in PIECE_SECONDS (measured on its recent
batches), that many rows. A one-row request that arrives while a 100,000-row request runs
therefore waits one or two pieces, not the whole request, and shares a runtime call with that
request's next piece. A request that fits a batch is never cut: if it does not fit the batch being
formed it starts the next one. The worker keeps collecting until the batch is full or its first
request has waited `max_wait_ms` since it arrived, runs `ModelHost.predict_valid` once on the
concatenated table in a worker thread, and hands each piece its slice of the result; a request is
answered when its last piece is, its pieces' outputs joined in order. While a batch runs, new
requests queue up, so under load batches grow by themselves.

A request whose caller gives up (its request timed out, or its client went away) leaves the queue
with every piece that has not started; a piece already running finishes and its result is dropped.
If a coalesced batch fails, its pieces are retried one by one so one request's failure stays its
own, and a failed request's remaining pieces are dropped. With batching disabled (for benchmarks)
every batch holds one piece of one request: no request shares a call, large ones are still cut
and interleaved, and the per-model concurrency limit (one call at a time per version) holds either
way, so turning batching off changes only how many requests share a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field

import anyio.to_thread
import pyarrow as pa

from sqlml.bridge.failures import overloaded
from sqlml.bridge.host import LoadedModel, ModelHost
from sqlml.bridge.metrics import BridgeMetrics

log = logging.getLogger("sqlml.batcher")

IDLE_WORKER_SECONDS = 30.0  # a worker with nothing to do goes away; the next request starts one
# A piece of a large request is one batch of rows, or as many rows as the model scores in about
# this long if that is more: a fast model (XGBoost, ~1 µs a row) would otherwise spend most of a
# large request on per-call overhead (~0.5 ms a call), while callers behind it wait a few slices.
PIECE_SECONDS = 0.02


@dataclass(eq=False)  # identity equality: a lane removes exactly this request
class _Request:
    model: LoadedModel
    inputs: pa.Table
    future: asyncio.Future[pa.Table] = field(repr=False)
    queued_at: float = 0.0  # the event loop's clock when the request joined the queue
    taken: int = 0  # rows handed to batches so far
    answered: int = 0  # rows of answered pieces
    outputs: list[pa.Table] = field(default_factory=list, repr=False)  # answered pieces, in order

    @property
    def rows(self) -> int:
        rows: int = self.inputs.num_rows
        return rows

    def piece(self, rows: int) -> _Piece:
        """The next `rows` rows of this request (no copy: a slice of its table)."""
        start, self.taken = self.taken, self.taken + rows
        return _Piece(self, self.inputs if rows == self.rows else self.inputs.slice(start, rows))

    def answer(self, outputs: pa.Table) -> None:
        """One piece's outputs (pieces answer in order); the request's result once all have."""
        if self.future.done():  # its caller is gone
            return
        if not self.outputs and outputs.num_rows == self.rows:  # one piece: the common case
            self.future.set_result(outputs)
            return
        self.outputs.append(outputs)
        self.answered += outputs.num_rows
        if self.answered == self.rows:
            self.future.set_result(pa.concat_tables(self.outputs))


@dataclass
class _Piece:
    request: _Request
    inputs: pa.Table

    @property
    def rows(self) -> int:
        rows: int = self.inputs.num_rows
        return rows

    @property
    def model(self) -> LoadedModel:
        return self.request.model


class _Lane:
    """The requests waiting for one model version's worker, served round-robin, and how fast the
    model has scored rows lately (which sizes the pieces of large requests)."""

    def __init__(self) -> None:
        self.requests: deque[_Request] = deque()
        self._arrived = asyncio.Event()
        self._seconds_per_row: float | None = None  # None until a batch ran

    def timed(self, rows: int, seconds: float) -> None:
        """Note how long a batch of `rows` took (a moving average, so one slow call moves it little)."""
        latest = max(seconds, 1e-6) / rows
        known = self._seconds_per_row
        self._seconds_per_row = latest if known is None else 0.7 * known + 0.3 * latest

    def piece_rows(self, batch_rows: int) -> int:
        """The rows of a large request's next piece: a batch, or about PIECE_SECONDS of work."""
        known = self._seconds_per_row
        return batch_rows if known is None else max(batch_rows, int(PIECE_SECONDS / known))

    def add(self, request: _Request) -> None:
        self.requests.append(request)
        self._arrived.set()

    def drop(self, request: _Request) -> None:
        """Forget a request whose caller gave up or that failed: its remaining pieces never run."""
        with contextlib.suppress(ValueError):
            self.requests.remove(request)

    async def wait(self, seconds: float) -> bool:
        """Wait up to `seconds` for a request to arrive; False if none did. Called with the queue
        empty or its head not fitting, without an await since that check, so no arrival is missed."""
        self._arrived.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._arrived.wait()
        except TimeoutError:
            return False
        return True

    def take(self, room: int, size: int) -> _Piece | None:
        """A piece of at most `room` rows from the request at the head, or None when the queue is
        empty or its head fits neither `room` nor is larger than a batch (`size` rows). A request
        with rows left after its piece goes to the back of the queue, behind the callers waiting."""
        requests = self.requests
        while requests and requests[0].future.done():  # defensive: dropped requests are removed
            requests.popleft()
        if not requests:
            return None
        request = requests[0]
        left = request.rows - request.taken
        if left <= room:
            requests.popleft()
            return request.piece(left)
        if request.rows <= size:
            return None  # fits a batch of its own: never cut, it starts the next batch
        requests.rotate(-1)
        return request.piece(room)


class DynamicBatcher:
    def __init__(
        self,
        host: ModelHost,
        metrics: BridgeMetrics | None = None,
        *,
        enabled: bool = True,
        max_batch_size: int | None = None,
        max_wait_ms: float | None = None,
        max_pending: int = 4096,
    ):
        self.host = host
        self.metrics = metrics
        self.enabled = enabled
        self.max_batch_size = max_batch_size  # None: each manifest's own setting
        self.max_wait_ms = max_wait_ms
        self.max_pending = max_pending
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._workers: dict[tuple[str, int], asyncio.Task[None]] = {}

    async def predict(self, model: LoadedModel, batch: pa.Table) -> pa.Table:
        """The model's outputs for `batch`, possibly computed together with other requests."""
        inputs = self.host.validate(model, batch)
        loop = asyncio.get_running_loop()
        request = _Request(model, inputs, loop.create_future(), loop.time())
        if inputs.num_rows == 0:
            return (await self._run([_Piece(request, inputs)]))[0]
        lane = self._lane_for(model.key)
        if len(lane.requests) >= self.max_pending:
            raise overloaded(model, len(lane.requests))
        lane.add(request)
        try:
            return await request.future
        except asyncio.CancelledError:  # the caller gave up: its pieces that have not run never will
            lane.drop(request)
            raise

    def batch_rows(self, model: LoadedModel) -> int:
        """The rows of one batch: requests larger than this are served in pieces."""
        return self.max_batch_size or model.manifest.batching.max_batch_size

    async def close(self) -> None:
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._lanes.clear()

    # -- internals -------------------------------------------------------------------------

    def _lane_for(self, key: tuple[str, int]) -> _Lane:
        # Runs without awaiting, as does the worker's exit check: they cannot interleave.
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
            self._workers[key] = asyncio.get_running_loop().create_task(self._work(key, lane))
        return lane

    def _limits(self, model: LoadedModel) -> tuple[int, float]:
        """Rows per batch, and seconds a batch waits for company."""
        wait = self.max_wait_ms if self.max_wait_ms is not None else model.manifest.batching.max_wait_ms
        return self.batch_rows(model), wait / 1000.0

    async def _work(self, key: tuple[str, int], lane: _Lane) -> None:
        while True:
            if not lane.requests:
                if not await lane.wait(IDLE_WORKER_SECONDS) and not lane.requests:
                    del self._lanes[key], self._workers[key]
                    return
                continue
            batch = await self._gather(lane)
            if batch:
                await self._serve(lane, batch)

    async def _gather(self, lane: _Lane) -> list[_Piece]:
        size, wait = self._limits(lane.requests[0].model)
        first = lane.take(lane.piece_rows(size), size)
        if first is None or not self.enabled:
            return [] if first is None else [first]
        batch, rows = [first], first.rows
        # max_wait_ms bounds how long a request waits for company, counted from its arrival: one
        # that queued while the previous batch ran has waited already, so under load batches run
        # back to back, each taking whatever arrived meanwhile.
        deadline = first.request.queued_at + wait
        loop = asyncio.get_running_loop()
        while rows < size:
            piece = lane.take(size - rows, size)
            if piece is not None:
                batch.append(piece)
                rows += piece.rows
                continue
            if lane.requests:
                break  # the next request does not fit: it starts the next batch
            remaining = deadline - loop.time()
            if remaining <= 0 or not await lane.wait(remaining):
                break
        return batch

    async def _serve(self, lane: _Lane, batch: list[_Piece]) -> None:
        live = [p for p in batch if not p.request.future.done()]  # callers that gave up are gone
        if not live:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            results = await self._run(live)
        except Exception as exc:
            for piece in live:
                self._fail(lane, piece.request, exc)
            return
        lane.timed(sum(p.rows for p in live), loop.time() - started)
        for piece, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                self._fail(lane, piece.request, result)
            else:
                piece.request.answer(result)

    def _fail(self, lane: _Lane, request: _Request, error: BaseException) -> None:
        lane.drop(request)  # a large request's later pieces would only fail the same way
        if not request.future.done():
            request.future.set_exception(error)

    async def _run(self, batch: list[_Piece]) -> list[pa.Table]:
        """Predict on all of `batch` at once in a worker thread; results (or errors) per piece."""
        results = await anyio.to_thread.run_sync(self._predict_batch, batch)
        if len(batch) == 1 and isinstance(results[0], BaseException):
            raise results[0]
        return results  # type: ignore[return-value]

    def _predict_batch(self, batch: list[_Piece]) -> list[pa.Table | BaseException]:
        model = batch[0].model
        name = model.manifest.name
        rows = sum(p.rows for p in batch)
        if self.metrics:
            self.metrics.batch(name, rows, len(batch))
        try:
            if len(batch) == 1:
                return [self._call(model, batch[0].inputs)]
            outputs = self._call(model, pa.concat_tables([p.inputs for p in batch]))
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            log.info("batch of %d requests to %s failed (%s); retrying one by one", len(batch), name, exc)
            return [self._call_or_error(p.model, p.inputs) for p in batch]
        out: list[pa.Table | BaseException] = []
        offset = 0
        for piece in batch:
            out.append(outputs.slice(offset, piece.rows))
            offset += piece.rows
        return out

    def _call_or_error(self, model: LoadedModel, inputs: pa.Table) -> pa.Table | BaseException:
        try:
            return self._call(model, inputs)
        except Exception as exc:
            return exc

    def _call(self, model: LoadedModel, inputs: pa.Table) -> pa.Table:
        return self.host.predict_valid(model, inputs)
