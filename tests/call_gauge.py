"""A gauge of concurrent calls, for fakes that check how many calls a host lets in at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CallGauge:
    """`with gauge.inside(key):` around a call; `gauge.most[key]` is the most calls ever inside at once."""

    def __init__(self) -> None:
        self.most: dict[str, int] = {}
        self._inside: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def inside(self, key: str) -> Iterator[None]:
        with self._lock:
            self._inside[key] = self._inside.get(key, 0) + 1
            self.most[key] = max(self.most.get(key, 0), self._inside[key])
        try:
            yield
        finally:
            with self._lock:
                self._inside[key] -= 1
