"""A fake runtime whose `load()` takes time, for the cold-start tests.

`fake_slow_load` is the fake sum model of `sqlml_test_fakes` with a slow load: it waits for the
gate a test opened under its model's name (`LoadGates`), else sleeps `params.load_s` seconds (a
bridge subprocess, which a test cannot reach into, imports this module through `SQLML_PLUGINS`).
Every load is counted in `LOADS`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from sqlml.bridge.runtimes import register_runtime
from tests.bridge.sqlml_test_fakes import SumRuntime

LOADS: Counter[str] = Counter()  # model name -> loads started in this process
_loads_lock = threading.Lock()
GATE_TIMEOUT_S = 30.0  # a test that forgets to open its gate fails instead of hanging


class LoadGates:
    """Closed gates that hold the loads of the named models until a test opens them."""

    def __init__(self) -> None:
        self._gates: dict[str, threading.Event] = {}

    def close(self, name: str) -> None:
        self._gates[name] = threading.Event()

    def open(self, name: str) -> None:
        self._gates.pop(name, threading.Event()).set()

    def open_all(self) -> None:
        for name in list(self._gates):
            self.open(name)

    def wait(self, name: str) -> bool:
        """Wait while `name`'s gate is closed; False when there is no gate."""
        gate = self._gates.get(name)
        if gate is None:
            return False
        if not gate.wait(GATE_TIMEOUT_S):
            raise TimeoutError(f"the load gate of {name!r} was never opened")
        return True


GATES = LoadGates()


class SlowLoadRuntime(SumRuntime):
    name = "fake_slow_load"

    def load(self) -> None:
        name = self.manifest.name
        with _loads_lock:
            LOADS[name] += 1
        if not GATES.wait(name):
            time.sleep(float(self.manifest.params.get("load_s", 0.0)))
        super().load()


register_runtime(SlowLoadRuntime.name, f"{__name__}:{SlowLoadRuntime.__name__}")
