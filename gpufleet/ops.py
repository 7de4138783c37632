"""Operations surface shared by every service: Prometheus metrics, /healthz, /readyz.

Each service owns one ``Metrics`` (a ``prometheus_client`` registry of its own, no module-level
state), counts into it by name, and serves it with ``serve_ops`` on its own port (or mounts
``add_ops_routes`` into its own app). ``/metrics`` answers in the Prometheus text format, or in
OpenMetrics when the scraper's ``Accept`` header asks for it; ``prometheus_client`` writes both.

A metric is made on first use, named ``<namespace>_<name>``: ``inc`` makes a counter (its name
ends in ``_total``), ``set`` a gauge, ``observe`` a histogram. Its label names are those of the
first call; a later call with other label names, or the same name used as another kind, is a
programming error and raises ``ValueError`` naming the metric.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.aiohttp import make_aiohttp_handler

Labels = tuple[tuple[str, str], ...]
ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

_Metric = Counter | Gauge | Histogram


class Metrics:
    """One service's metrics: counters, gauges and histograms in a registry of its own.

    ``process=True`` (the default) adds the process's own CPU time, memory and open files
    (``process_*``) and the Python runtime's (``python_*``), as every Prometheus client does.
    """

    def __init__(self, namespace: str = "gpufleet", *, process: bool = True) -> None:
        self.namespace = namespace
        self.registry = CollectorRegistry(auto_describe=True)
        self._made: dict[str, tuple[str, tuple[str, ...], _Metric]] = {}
        self._series: dict[tuple[str, str, Labels], _Metric] = {}  # (kind, name, labels)
        self._lock = threading.Lock()
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def _metric(self, kind: str, name: str, help_text: str, labels: dict[str, str]) -> _Metric:
        key = (kind, name, tuple(sorted(labels.items())))
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self._new_series(kind, name, help_text, labels)
        return series

    def _new_series(self, kind: str, name: str, help_text: str,
                    labels: dict[str, str]) -> _Metric:
        label_names = tuple(sorted(labels))
        made = self._made.get(name)
        if made is None:
            with self._lock:
                made = self._made.get(name) or self._make(kind, name, help_text, label_names)
        made_kind, made_labels, metric = made
        if made_kind != kind:
            raise ValueError(f"metric {self.namespace}_{name} is a {made_kind}, not a {kind}")
        if made_labels != label_names:
            raise ValueError(f"metric {self.namespace}_{name} has labels {list(made_labels)}, "
                             f"not {list(label_names)}")
        return metric.labels(**labels) if labels else metric

    def _make(self, kind: str, name: str, help_text: str,
              label_names: tuple[str, ...]) -> tuple[str, tuple[str, ...], _Metric]:
        full = f"{self.namespace}_{name}"
        args = (full, help_text or full, label_names)
        metric: _Metric
        try:
            if kind == "counter":
                metric = Counter(*args, registry=self.registry)
            elif kind == "gauge":
                metric = Gauge(*args, registry=self.registry)
            else:
                metric = Histogram(*args, registry=self.registry, buckets=LATENCY_BUCKETS)
        except ValueError as e:  # a name that clashes with another metric's series
            raise ValueError(f"metric {full} ({kind}): {e}") from e
        self._made[name] = (kind, label_names, metric)
        return self._made[name]

    def inc(self, name: str, amount: float = 1.0, help: str = "", **labels: str) -> None:
        cast(Counter, self._metric("counter", name, help, labels)).inc(amount)

    def set(self, name: str, value: float, help: str = "", **labels: str) -> None:
        cast(Gauge, self._metric("gauge", name, help, labels)).set(value)

    def observe(self, name: str, value: float, help: str = "", **labels: str) -> None:
        cast(Histogram, self._metric("histogram", name, help, labels)).observe(value)

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's value, a histogram's count of observations; 0 when unseen."""
        made = self._made.get(name)
        if made is None:
            return 0.0
        kind, _, _ = made
        full = f"{self.namespace}_{name}"
        sample = {"counter": full.removesuffix("_total") + "_total", "gauge": full,
                  "histogram": full + "_count"}[kind]
        found = self.registry.get_sample_value(sample, labels)
        return 0.0 if found is None else found

    def render(self) -> str:
        """The Prometheus text format (0.0.4) of everything in the registry."""
        return generate_latest(self.registry).decode()


async def _always_ready() -> dict[str, bool]:
    return {}


def add_ops_routes(app: web.Application, metrics: Metrics, ready: ReadyCheck | None = None) -> None:
    """Mount /healthz, /readyz and /metrics on an aiohttp app."""
    check = ready or _always_ready

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        parts = await check()
        ok = all(parts.values())
        return web.json_response({"ready": ok, "checks": parts}, status=200 if ok else 503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))


async def serve_ops(
    metrics: Metrics, host: str, port: int, ready: ReadyCheck | None = None
) -> web.AppRunner:
    """Serve the ops routes on their own port; the caller awaits ``runner.cleanup()``."""
    app = web.Application()
    add_ops_routes(app, metrics, ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
