"""Dynamic batching: concurrent predict requests to one model version share one runtime call.

Each request is validated on its own (so a bad request fails alone), then queued for its model
version. One worker per version takes the first queued request, keeps collecting until the batch
holds `max_batch_size` rows or that request has waited `max_wait_ms` since it arrived, runs
`ModelHost.predict_loaded` once on the concatenated table in a worker thread, and hands each
request its slice of the result, in order. While a batch runs, new requests queue up, so under
load batches grow by themselves. If a coalesced batch fails, its requests are retried one by one
so one request's failure stays its own. With batching disabled (for benchmarks) every request
is a runtime call of its own, still one at a time per version: the per-model concurrency limit
holds either way, so turning batching off changes only how many requests share a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import anyio.to_thread
import pyarrow as pa

from sqlml.bridge.host import LoadedModel, ModelHost
from sqlml.bridge.metrics import BridgeMetrics
from sqlml.bridge.signature import conform
from sqlml.errors import SqlmlError, Unavailable, library_error_text

log = logging.getLogger("sqlml.batcher")

IDLE_WORKER_SECONDS = 30.0  # a worker with nothing to do goes away; the next request starts one


@dataclass
class _Pending:
    model: LoadedModel
    inputs: pa.Table
    future: asyncio.Future[pa.Table] = field(repr=False)
    queued_at: float = 0.0  # the event loop's clock when the request joined the queue

    @property
    def rows(self) -> int:
        rows: int = self.inputs.num_rows
        return rows


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
        self._queues: dict[tuple[str, int], asyncio.Queue[_Pending]] = {}
        self._workers: dict[tuple[str, int], asyncio.Task[None]] = {}

    async def predict(self, model: LoadedModel, batch: pa.Table) -> pa.Table:
        """The model's outputs for `batch`, possibly computed together with other requests."""
        inputs = conform(model.manifest, batch)
        if inputs.num_rows == 0:
            return (await self._run([_Pending(model, inputs, asyncio.get_running_loop().create_future())]))[0]
        queue = self._queue_for(model.key)
        if queue.qsize() >= self.max_pending:
            raise overloaded(model, queue.qsize())
        loop = asyncio.get_running_loop()
        future: asyncio.Future[pa.Table] = loop.create_future()
        queue.put_nowait(_Pending(model, inputs, future, loop.time()))
        return await future

    async def close(self) -> None:
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._queues.clear()

    # -- internals -------------------------------------------------------------------------

    def _queue_for(self, key: tuple[str, int]) -> asyncio.Queue[_Pending]:
        # Runs without awaiting, as does the worker's exit check: they cannot interleave.
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Queue()
            self._workers[key] = asyncio.get_running_loop().create_task(self._work(key, queue))
        return queue

    def _limits(self, model: LoadedModel) -> tuple[int, float]:
        if not self.enabled:
            return 1, 0.0  # a batch of one request (the first request is taken whatever its rows)
        batching = model.manifest.batching
        size = self.max_batch_size or batching.max_batch_size
        wait = self.max_wait_ms if self.max_wait_ms is not None else batching.max_wait_ms
        return size, wait / 1000.0

    async def _work(self, key: tuple[str, int], queue: asyncio.Queue[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        carried: _Pending | None = None
        while True:
            if carried is not None:
                first, carried = carried, None
            else:
                try:
                    first = await asyncio.wait_for(queue.get(), IDLE_WORKER_SECONDS)
                except TimeoutError:
                    if queue.empty():
                        del self._queues[key], self._workers[key]
                        return
                    continue
            batch = [first]
            rows = first.rows
            limit, wait = self._limits(first.model)
            # max_wait_ms bounds how long a request waits for company, counted from its arrival: one
            # that queued while the previous batch ran has waited already, so under load batches run
            # back to back, each taking whatever arrived meanwhile.
            deadline = first.queued_at + wait
            while rows < limit:
                if queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                else:
                    item = queue.get_nowait()
                if rows + item.rows > limit:
                    carried = item  # starts the next batch, so no request waits behind a full one
                    break
                batch.append(item)
                rows += item.rows
            live = [p for p in batch if not p.future.done()]  # timed-out callers are gone
            if not live:
                continue
            try:
                results = await self._run(live)
            except Exception as exc:
                for pending in live:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            for pending, result in zip(live, results, strict=True):
                if pending.future.done():
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

    async def _run(self, batch: list[_Pending]) -> list[pa.Table]:
        """Predict on all of `batch` at once in a worker thread; results (or errors) per request."""
        results = await anyio.to_thread.run_sync(self._predict_batch, batch)
        if len(batch) == 1 and isinstance(results[0], BaseException):
            raise results[0]
        return results  # type: ignore[return-value]

    def _predict_batch(self, batch: list[_Pending]) -> list[pa.Table | BaseException]:
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
        for pending in batch:
            out.append(outputs.slice(offset, pending.rows))
            offset += pending.rows
        return out

    def _call_or_error(self, model: LoadedModel, inputs: pa.Table) -> pa.Table | BaseException:
        try:
            return self._call(model, inputs)
        except Exception as exc:
            return exc

    def _call(self, model: LoadedModel, inputs: pa.Table) -> pa.Table:
        try:
            return self.host.predict_loaded(model, inputs)
        except SqlmlError:
            raise
        except Exception as exc:
            raise model_failure(model, "predict", exc) from exc


def overloaded(model: LoadedModel, queued: int) -> Unavailable:
    """The 503 for a model version whose queue is full (the batcher's, or explain / forecast turns)."""
    return Unavailable(
        f'model "{model.manifest.name}" is overloaded ({queued} requests queued)',
        hint="retry later, send larger batches, or run more bridge replicas",
    )


def model_failure(model: LoadedModel, operation: str, exc: Exception) -> SqlmlError:
    """A runtime that raises on valid input is a model bug: a 500 with the model named (and the
    library's reason, without its native stack frames or install paths)."""
    m = model.manifest
    return SqlmlError(
        f'model "{m.name}" version {m.version} failed in {operation}: {library_error_text(exc)}',
        detail={"model": m.name, "version": m.version},
    )
