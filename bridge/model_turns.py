"""Per-model turns for the calls the batcher does not take (explain, forecast).

Runtimes run one call at a time per model version (`ModelHost` locks each model). Without this
gate a burst of slow explain calls to one model would park a worker thread per request on that
lock, and the shared thread pool (which model loads use too) would run dry. Here callers wait on
the event loop instead, one call per version runs in a worker thread, and at most `max_pending`
wait behind it; beyond that the bridge answers 503 `unavailable`, as the batcher does for predict.

A caller that gives up (its request timed out) leaves the queue if it was waiting; if its call
was already running, the model's turn ends only when the call returns, so the next call never
starts beside a runtime call that is still working.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread

from sqlml.bridge.host import LoadedModel
from sqlml.errors import Unavailable

T = TypeVar("T")


class ModelTurns:
    def __init__(self, max_pending: int = 4096):
        self.max_pending = max_pending
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._callers: dict[tuple[str, int], int] = {}  # running + waiting, per version

    def callers(self, model: LoadedModel) -> int:
        return self._callers.get(model.key, 0)

    async def run(self, model: LoadedModel, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` in a worker thread when it is this model version's turn."""
        key = model.key
        callers = self._callers.get(key, 0)
        if callers > self.max_pending:  # one running, max_pending waiting
            raise Unavailable(
                f'model "{model.manifest.name}" is overloaded ({callers - 1} requests queued)',
                hint="retry later, send larger batches, or run more bridge replicas",
            )
        self._callers[key] = callers + 1
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            await lock.acquire()
        except BaseException:  # cancelled while waiting: it leaves the queue
            self._leave(key)
            raise
        try:
            call = asyncio.ensure_future(anyio.to_thread.run_sync(func, *args))
        except BaseException:
            lock.release()
            self._leave(key)
            raise
        call.add_done_callback(lambda done: self._end_turn(key, lock, done))
        return await asyncio.shield(call)  # a caller that gives up does not end the running call

    def _end_turn(self, key: tuple[str, int], lock: asyncio.Lock, call: asyncio.Future[Any]) -> None:
        if not call.cancelled():
            call.exception()  # retrieved here, so an abandoned call's error is not logged as unhandled
        lock.release()
        self._leave(key)

    def _leave(self, key: tuple[str, int]) -> None:
        self._callers[key] -= 1
        if self._callers[key] == 0:  # nobody holds or waits for the lock: forget it
            del self._callers[key]
            self._locks.pop(key, None)
