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
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread

from sqlml.bridge.failures import overloaded
from sqlml.bridge.host import LoadedModel

T = TypeVar("T")


@dataclass
class _Turns:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    callers: int = 0  # the running call and those waiting


class ModelTurns:
    def __init__(self, max_pending: int = 4096):
        self.max_pending = max_pending
        self._turns: dict[tuple[str, int], _Turns] = {}

    def callers(self, model: LoadedModel) -> int:
        turns = self._turns.get(model.key)
        return 0 if turns is None else turns.callers

    async def run(self, model: LoadedModel, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` in a worker thread when it is this model version's turn."""
        turns = self._turns.get(model.key)
        if turns is None:
            turns = self._turns[model.key] = _Turns()
        if turns.callers > self.max_pending:  # one running, max_pending waiting
            raise overloaded(model, turns.callers - 1)
        turns.callers += 1
        try:
            await turns.lock.acquire()
        except BaseException:  # cancelled while waiting: it leaves the queue
            self._leave(model.key, turns, release=False)
            raise
        call = asyncio.ensure_future(anyio.to_thread.run_sync(func, *args))
        call.add_done_callback(lambda done: self._end_turn(model.key, turns, done))
        return await asyncio.shield(call)  # a caller that gives up does not end the running call

    def _end_turn(self, key: tuple[str, int], turns: _Turns, call: asyncio.Future[Any]) -> None:
        if not call.cancelled():
            call.exception()  # retrieved here, so an abandoned call's error is not logged as unhandled
        self._leave(key, turns, release=True)

    def _leave(self, key: tuple[str, int], turns: _Turns, *, release: bool) -> None:
        if release:
            turns.lock.release()
        turns.callers -= 1
        if turns.callers == 0:  # nobody holds or waits for the lock: forget it
            del self._turns[key]
