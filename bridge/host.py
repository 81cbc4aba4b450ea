"""The model host: loads model versions on first use and keeps the hot ones in memory.

`ModelHost` is shared by embedded mode (DuckDB in-process) and the bridge service. It resolves a
reference (`name`, `name:3`, `name:staging`) through the registry, loads each version once even
under concurrent first requests, keeps loaded versions under a memory budget by evicting the least
recently used unpinned one, serves the runtimes named in `model_processes` from child processes
(`sqlml.bridge.model_process`), validates batches against the signature, and implements NULL in, NULL
out. If the version an alias points at fails to load (a corrupt artifact, or a manifest the
registry reports as `StoreCorrupt`), the newest older version that loads keeps serving (and the
failure is reported through `HostEvents`, as are the corrupt store files the registry finds).

Loads run in a thread of their own: callers of a version that is loading wait on that one load for
at most `load_timeout_s` and then get `Unavailable` ("still loading"), while the load goes on and
serves the next call. `preload` loads models in the background at start-up (see `Preload`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sqlml.bridge.failures import model_failure
from sqlml.bridge.manifest import Manifest
from sqlml.bridge.model_process import ProcessRuntime
from sqlml.bridge.registry import ModelRef, Registry
from sqlml.bridge.runtimes import Runtime, runtime_class
from sqlml.bridge.signature import arrow_type, conform, null_rows, scatter
from sqlml.errors import ModelLoadError, SqlmlError, Unavailable, library_error_text

log = logging.getLogger("sqlml.host")


class HostEvents:
    """Callbacks for metrics; the bridge subclasses it, embedded mode uses these no-ops."""

    def cache_hit(self, name: str, version: int) -> None: ...
    def cache_miss(self, name: str, version: int) -> None: ...
    def loaded(self, name: str, version: int, seconds: float, nbytes: int) -> None: ...
    def load_failed(self, name: str, version: int, error: SqlmlError) -> None: ...
    def waited_for_load(self, name: str, version: int, seconds: float) -> None: ...
    def unloaded(self, name: str, version: int, seconds: float) -> None: ...
    def model_process_crashed(self, name: str, version: int, how: str) -> None: ...
    def store_corrupt(self, name: str, file: str) -> None: ...
    def counted(self, name: str, key: str, count: int) -> None: ...


@dataclass
class LoadedModel:
    manifest: Manifest
    runtime: Runtime
    nbytes: int
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def key(self) -> tuple[str, int]:
        return (self.manifest.name, self.manifest.version)


@dataclass
class _Load:
    """One load in progress; every caller of that version waits on its future."""

    future: Future[LoadedModel] = field(default_factory=Future)
    started: float = field(default_factory=time.monotonic)


class ModelHost:
    def __init__(
        self,
        registry: Registry,
        memory_budget: int | None = None,
        events: HostEvents | None = None,
        model_processes: Collection[str] = (),
        load_timeout_s: float | None = None,
    ):
        self.registry = registry
        self.load_timeout_s = load_timeout_s  # how long a call waits for a load; None: as long as it takes
        self.memory_budget = memory_budget
        self.model_processes = frozenset(model_processes)  # runtime names, or "*": served from a child process
        self.events = events or HostEvents()
        self._loaded: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._pinned: set[str] = set()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, int], _Load] = {}
        registry.watch_corruption(self.events.store_corrupt)

    # -- lifecycle -------------------------------------------------------------------------

    def get(self, ref: ModelRef | str) -> LoadedModel:
        """The loaded model for a reference, loading it (once) if needed; `Unavailable` when a load
        takes longer than `load_timeout_s` (it goes on in the background)."""
        return self._get(ref, self.load_timeout_s)

    def load(self, ref: ModelRef | str) -> LoadedModel:
        """`get`, waiting for a load however long it takes (preloading: no caller is waiting)."""
        return self._get(ref, None)

    def _get(self, ref: ModelRef | str, wait_s: float | None) -> LoadedModel:
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        version = self.registry.resolve(ref)
        try:
            return self._get_version(ref.name, version, wait_s)
        except ModelLoadError:
            if ref.ref is not None and ref.ref.isdigit():
                raise  # an explicit version was asked for: no substitute
            for older in reversed([v for v in self.registry.versions(ref.name) if v < version]):
                try:
                    model = self._get_version(ref.name, older, wait_s)
                except ModelLoadError:
                    continue
                log.warning("model %s version %s failed to load; serving version %s", ref.name, version, older)
                return model
            raise

    def get_if_loaded(self, ref: ModelRef | str) -> LoadedModel | None:
        """The loaded model for a reference when it is already in memory (a cache hit), else None.

        Cheap enough for an event loop (one stat of the store for local stores): the bridge calls
        it first and only hands misses, which may load a model, to a worker thread. Remote stores
        may answer slowly, so for them it always says None."""
        if not self.registry.is_local:
            return None
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        version = self.registry.resolve(ref)
        key = (ref.name, version)
        with self._lock:
            model = self._loaded.get(key)
            if model is None:
                return None
            self._loaded.move_to_end(key)
        self.events.cache_hit(ref.name, version)
        return model

    def _get_version(self, name: str, version: int, wait_s: float | None) -> LoadedModel:
        key, arrived = (name, version), time.monotonic()
        with self._lock:
            model = self._loaded.get(key)
            if model is not None:
                self._loaded.move_to_end(key)
                self.events.cache_hit(name, version)
                return model
            self.events.cache_miss(name, version)
            load = self._loading.get(key)
            first = load is None
            if load is None:  # the first caller starts the one load of this version
                load = self._loading[key] = self._start_load(key)
        model = self._wait(load, name, version, wait_s)
        if not first:
            self.events.waited_for_load(name, version, time.monotonic() - arrived)
        return model

    def _wait(self, load: _Load, name: str, version: int, wait_s: float | None) -> LoadedModel:
        try:
            return load.future.result(timeout=wait_s)
        except TimeoutError:
            seconds = time.monotonic() - load.started
            raise Unavailable(
                f'model "{name}" is still loading ({seconds:.0f} s so far)',
                hint=f"retry in a moment, or load it when the bridge starts: sqlml serve --preload {name}",
                detail={"model": name, "version": version, "loading_s": round(seconds, 1)},
            ) from None

    def _start_load(self, key: tuple[str, int]) -> _Load:
        load = _Load()
        thread_name = f"load-{key[0]}-{key[1]}"
        threading.Thread(target=self._run_load, args=(key, load), name=thread_name, daemon=True).start()
        return load

    def _run_load(self, key: tuple[str, int], load: _Load) -> None:
        try:
            model = self._load(*key)
        except BaseException as exc:  # every waiter gets the error; the next call tries again
            with self._lock:
                self._loading.pop(key, None)
            load.future.set_exception(exc)
            return
        with self._lock:
            self._loaded[key] = model
            self._loading.pop(key, None)
            self._evict_over_budget(keep=key)
        load.future.set_result(model)

    def _load(self, name: str, version: int) -> LoadedModel:
        started = time.perf_counter()
        try:
            manifest = self.registry.manifest(name, version)
            runtime = self._runtime(manifest, self.registry.local_path(name, version))
            runtime.load()
            nbytes = runtime.memory_bytes()
        except SqlmlError as exc:
            if not isinstance(exc, ModelLoadError):
                exc = ModelLoadError(f'model "{name}" version {version} failed to load: {exc.message}')
            self.events.load_failed(name, version, exc)
            raise exc from None
        except Exception as exc:  # a corrupt artifact can raise anything from its library
            error = ModelLoadError(
                f'model "{name}" version {version} failed to load: {library_error_text(exc)}',
                hint="the artifact may be corrupt; earlier versions keep serving",
                detail={"model": name, "version": version},
            )
            self.events.load_failed(name, version, error)
            raise error from None
        self.events.loaded(name, version, time.perf_counter() - started, nbytes)
        return LoadedModel(manifest, runtime, nbytes)

    def _runtime(self, manifest: Manifest, path: Path) -> Runtime:
        cls = runtime_class(manifest.runtime)
        if manifest.runtime in self.model_processes or "*" in self.model_processes:
            name, version = manifest.name, manifest.version
            return ProcessRuntime(
                manifest, path, cls, on_crash=lambda how: self.events.model_process_crashed(name, version, how)
            )
        return cls(manifest, path)

    def _evict_over_budget(self, keep: tuple[str, int]) -> None:
        if self.memory_budget is None:
            return
        for key in list(self._loaded):
            if self.loaded_bytes() <= self.memory_budget:
                break
            if key == keep or key[0] in self._pinned:
                continue
            self._unload(key)

    def _unload(self, key: tuple[str, int]) -> None:
        model = self._loaded.pop(key)
        started = time.perf_counter()
        model.runtime.unload()
        self.events.unloaded(key[0], key[1], time.perf_counter() - started)

    def unload(self, name: str) -> int:
        """Unload every loaded version of `name`; returns how many were unloaded."""
        with self._lock:
            keys = [k for k in self._loaded if k[0] == name]
            for key in keys:
                self._unload(key)
        return len(keys)

    def pin(self, name: str) -> None:
        """Never evict `name` (any version) under memory pressure."""
        self._pinned.add(name)

    def unpin(self, name: str) -> None:
        self._pinned.discard(name)

    def pinned(self) -> set[str]:
        return set(self._pinned)

    def loaded(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._loaded)

    def loaded_bytes(self) -> int:
        return sum(m.nbytes for m in self._loaded.values())

    # -- inference -------------------------------------------------------------------------

    # The host owns each concern of a call once: it validates inputs (`validate`), resolves a
    # reference (`get`), and turns an unexpected runtime exception into a model failure (`_run`).
    # The bridge's batcher and routes resolve and validate once per request, then call the
    # `*_loaded` / `predict_valid` forms.

    def validate(self, model: LoadedModel, batch: pa.Table) -> pa.Table:
        """The batch conformed to the model's signature: the one place inputs are checked."""
        return conform(model.manifest, batch)

    def predict(self, ref: ModelRef | str, batch: pa.Table) -> pa.Table:
        """Validate, drop NULL rows, predict, and put NULLs back in place; order is preserved."""
        model = self.get(ref)
        return self.predict_valid(model, self.validate(model, batch))

    def predict_valid(self, model: LoadedModel, inputs: pa.Table) -> pa.Table:
        """`predict` on a resolved model and inputs `validate` returned."""
        schema = output_schema(model.manifest)
        kept, keep = _without_null_rows(inputs, model.manifest)
        if kept.num_rows == 0:
            return pa.Table.from_arrays([pa.nulls(len(keep), f.type) for f in schema], schema=schema)
        outputs = self._run(model, "predict", model.runtime.predict, kept)
        for key, count in model.runtime.drain_counts().items():
            self.events.counted(model.manifest.name, key, count)
        return scatter(outputs.select(schema.names).cast(schema), keep, schema)

    def explain(self, ref: ModelRef | str, batch: pa.Table, top_k: int = 5) -> pa.Table:
        return self.explain_loaded(self.get(ref), batch, top_k)

    def explain_loaded(self, model: LoadedModel, batch: pa.Table, top_k: int = 5) -> pa.Table:
        kept, keep = _without_null_rows(self.validate(model, batch), model.manifest)
        outputs = self._run(model, "explain", model.runtime.explain, kept, top_k)
        return scatter(outputs, keep, outputs.schema)

    def forecast(
        self,
        ref: ModelRef | str,
        series: list[str] | None,
        horizon: int,
        quantiles: list[str],
        future: pa.Table | None = None,
        history: pa.Table | None = None,
    ) -> pa.Table:
        return self.forecast_loaded(self.get(ref), series, horizon, quantiles, future, history)

    def forecast_loaded(
        self,
        model: LoadedModel,
        series: list[str] | None,
        horizon: int,
        quantiles: list[str],
        future: pa.Table | None = None,
        history: pa.Table | None = None,
    ) -> pa.Table:
        """`future` (covariate values) and `history` (observations) reach the runtime only when
        given, so a plugin runtime written before they existed keeps forecasting."""
        extra = () if future is None and history is None else (future, history)
        return self._run(model, "forecast", model.runtime.forecast, series, horizon, quantiles, *extra)

    def _run(self, model: LoadedModel, operation: str, call: Callable[..., pa.Table], *args: Any) -> pa.Table:
        with self._using(model):
            try:
                return call(*args)
            except SqlmlError:
                raise
            except Exception as exc:  # a runtime that raises on valid input: a model bug, named as such
                raise model_failure(model, operation, exc) from exc

    @contextmanager
    def _using(self, model: LoadedModel) -> Iterator[None]:
        # Runtimes are not assumed thread-safe unless they say so (Runtime.thread_safe).
        if model.runtime.thread_safe:
            yield
            return
        with model.lock:
            yield


class Preload:
    """The start-up preload: models loaded one after another in a background thread, so the bridge
    answers at once while `/readyz` says what is still loading. References resolve as calls do (a
    bare name is the production version, else the latest); `*` is every model in the store. A
    model that fails is logged and remembered, and the others go on: the preload is done when each
    reference has loaded or failed. Loads one at a time: on a small machine, parallel loads of
    CPU-bound models each finish later."""

    def __init__(self, host: ModelHost, refs: Sequence[str]):
        self.host = host
        self._pending = list(dict.fromkeys(refs))
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def start(self) -> None:
        if self._pending:
            threading.Thread(target=self._run, name="preload", daemon=True).start()

    def stop(self) -> None:
        """Start no further loads (the bridge is shutting down)."""
        self._stopped.set()

    def loading(self) -> list[str]:
        """References not loaded yet (`*` until the store has been listed)."""
        with self._lock:
            return list(self._pending)

    def failed(self) -> dict[str, str]:
        """Reference -> why it did not load."""
        with self._lock:
            return dict(self._failed)

    def _run(self) -> None:
        self._expand_all()
        while not self._stopped.is_set():
            with self._lock:
                if not self._pending:
                    return
                ref = self._pending[0]
            self._load(ref)
            with self._lock:
                self._pending.pop(0)

    def _expand_all(self) -> None:
        with self._lock:
            if "*" not in self._pending:
                return
        names: list[str] = []
        try:
            names = self.host.registry.names()
        except Exception as exc:  # an unreadable store: /readyz says so too
            self._fail("*", f"the model store could not be listed: {library_error_text(exc)}")
        with self._lock:
            self._pending = list(dict.fromkeys([r for r in self._pending if r != "*"] + names))

    def _load(self, ref: str) -> None:
        started = time.monotonic()
        try:
            model = self.host.load(ref)
        except SqlmlError as exc:
            self._fail(ref, exc.message)
            return
        except Exception as exc:  # the store itself failing (I/O): loads turn library errors into ModelLoadError
            self._fail(ref, library_error_text(exc))
            return
        m = model.manifest
        log.info("preloaded %s (version %s) in %.1f s", m.name, m.version, time.monotonic() - started)

    def _fail(self, ref: str, message: str) -> None:
        log.error("preload of %s failed: %s", ref, message)
        with self._lock:
            self._failed[ref] = message


def _without_null_rows(inputs: pa.Table, manifest: Manifest) -> tuple[pa.Table, pa.Array]:
    """Validated inputs without rows holding a NULL in an input that is not `nullable`, and the
    mask of kept rows (to put NULL outputs back in place). No copy when every row is kept."""
    strict = [c.name for c in manifest.signature.inputs if not c.nullable]
    keep = pc.invert(null_rows(inputs, strict))
    return (inputs if pc.all(keep).as_py() else inputs.filter(keep)), keep


def output_schema(manifest: Manifest) -> pa.Schema:
    return pa.schema([pa.field(c.name, arrow_type(c.type)) for c in manifest.signature.outputs])
