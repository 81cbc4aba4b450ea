"""Prometheus metrics of the bridge, one `CollectorRegistry` per app.

Names follow SageMaker multi-model endpoints (cache hits, loaded model count, loading, waiting and
unloading time) plus per-model request counts, latency and batch-size histograms, errors by
code and corrupt store entries. `BridgeMetrics` is also the host's `HostEvents`, so the host
reports loads, evictions and the corrupt store files its registry finds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from sqlml.bridge.host import HostEvents
from sqlml.errors import SqlmlError

M = TypeVar("M", bound=MetricWrapperBase)  # a labelled metric and the series `labels` returns for it

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
LOAD_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


class BridgeMetrics(HostEvents):
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._series: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}
        r = self.registry
        self.cache_hits = Counter(
            "sqlml_model_cache_hits", "Requests served by an already loaded model", ["model"], registry=r
        )
        self.cache_misses = Counter(
            "sqlml_model_cache_misses", "Requests that had to load a model", ["model"], registry=r
        )
        self.loaded_models = Gauge("sqlml_loaded_models", "Model versions in memory", registry=r)
        self.loaded_bytes = Gauge("sqlml_loaded_model_bytes", "Estimated bytes of loaded models", registry=r)
        self.memory_budget = Gauge("sqlml_memory_budget_bytes", "Memory budget of loaded models (0: none)", registry=r)
        self.load_seconds = Histogram(
            "sqlml_model_load_seconds", "Time to load a model version", ["model"], buckets=LOAD_BUCKETS, registry=r
        )
        self.load_failures = Counter(
            "sqlml_model_load_failures", "Model versions that failed to load", ["model", "version"], registry=r
        )
        self.load_wait_seconds = Histogram(
            "sqlml_model_load_wait_seconds",
            "Time a request waited for another request's load of the same version",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.unload_seconds = Histogram(
            "sqlml_model_unload_seconds",
            "Time to unload (evict) a model version",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.process_crashes = Counter(
            "sqlml_model_process_crashes",
            "Model processes (model_processes) that ended other than by unload: a native crash, the OOM killer",
            ["model", "version"],
            registry=r,
        )
        self.requests = Counter(
            "sqlml_requests",
            "Model requests by model, version and operation",
            ["model", "version", "operation"],
            registry=r,
        )
        self.rows = Counter("sqlml_rows", "Rows scored", ["model", "operation"], registry=r)
        self.latency = Histogram(
            "sqlml_request_latency_seconds",
            "Latency of model requests inside the bridge",
            ["model", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "sqlml_batch_size_rows",
            "Rows per runtime call after dynamic batching",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "sqlml_batch_size_requests",
            "Requests coalesced into one runtime call by the dynamic batcher",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.store_corrupt_entries = Counter(
            "sqlml_store_corrupt_entries",
            "Store files (manifests, aliases) found unreadable or invalid; each counted once until it reads well",
            ["model"],
            registry=r,
        )
        self.errors = Counter("sqlml_errors", "Failed requests by error code", ["code"], registry=r)
        self.unseen_categories = Counter(
            "sqlml_unseen_categories",
            "Category values a tabular model never saw at training, scored as missing",
            ["model", "feature"],
            registry=r,
        )

    def watch_host(
        self, loaded_count: Callable[[], float], loaded_bytes: Callable[[], float], budget: int | None
    ) -> None:
        """Gauges read from the host at scrape time, so they are never stale."""
        self.loaded_models.set_function(loaded_count)
        self.loaded_bytes.set_function(loaded_bytes)
        self.memory_budget.set(budget or 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- HostEvents ------------------------------------------------------------------------

    def cache_hit(self, name: str, version: int) -> None:
        self._labelled(self.cache_hits, name).inc()

    def cache_miss(self, name: str, version: int) -> None:
        self.cache_misses.labels(name).inc()

    def loaded(self, name: str, version: int, seconds: float, nbytes: int) -> None:
        self.load_seconds.labels(name).observe(seconds)

    def load_failed(self, name: str, version: int, error: SqlmlError) -> None:
        self.load_failures.labels(name, str(version)).inc()

    def waited_for_load(self, name: str, version: int, seconds: float) -> None:
        self.load_wait_seconds.labels(name).observe(seconds)

    def unloaded(self, name: str, version: int, seconds: float) -> None:
        self.unload_seconds.labels(name).observe(seconds)

    def model_process_crashed(self, name: str, version: int, how: str) -> None:
        self.process_crashes.labels(name, str(version)).inc()

    def store_corrupt(self, name: str, file: str) -> None:
        self.store_corrupt_entries.labels(name).inc()

    def counted(self, name: str, key: str, count: int) -> None:
        kind, _, feature = key.partition(":")
        if kind == "unseen_category":
            self._labelled(self.unseen_categories, name, feature).inc(count)

    # -- requests --------------------------------------------------------------------------

    def request(self, name: str, version: int, operation: str, rows: int, seconds: float) -> None:
        self._labelled(self.requests, name, str(version), operation).inc()
        self._labelled(self.rows, name, operation).inc(rows)
        self._labelled(self.latency, name, operation).observe(seconds)

    def batch(self, name: str, rows: int, requests: int) -> None:
        self._labelled(self.batch_rows, name).observe(rows)
        self._labelled(self.batch_requests, name).observe(requests)

    def _labelled(self, metric: M, *values: str) -> M:
        """`metric.labels(*values)`, remembered: the per-request metrics look their series up once
        (prometheus_client takes a lock and validates the labels on every `labels` call)."""
        key = (metric, values)
        child = self._series.get(key)
        if child is None:
            child = self._series[key] = metric.labels(*values)
        return child  # type: ignore[return-value]

    def error(self, code: str) -> None:
        self.errors.labels(code).inc()
