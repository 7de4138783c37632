"""Operations surface shared by every service: Prometheus metrics, /healthz, /readyz.

Each service owns one ``Metrics`` registry (no module-level state), counts into it, and serves
it with ``serve_ops`` on its own port (or mounts ``add_ops_routes`` into its own app).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

Labels = tuple[tuple[str, str], ...]
ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def _labels(labels: dict[str, str] | None) -> Labels:
    return tuple(sorted((labels or {}).items()))


def _fmt_labels(labels: Labels, extra: Iterable[tuple[str, str]] = ()) -> str:
    items = [*labels, *extra]
    if not items:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in items)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1


@dataclass
class Metrics:
    """Counters, gauges and histograms, rendered in the Prometheus text format."""

    namespace: str = "gpufleet"
    _kinds: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (type, help)
    _values: dict[str, dict[Labels, float]] = field(default_factory=dict)
    _hists: dict[str, dict[Labels, Histogram]] = field(default_factory=dict)

    def _declare(self, name: str, kind: str, help_text: str) -> str:
        full = f"{self.namespace}_{name}"
        self._kinds.setdefault(full, (kind, help_text))
        return full

    def inc(self, name: str, amount: float = 1.0, help: str = "", **labels: str) -> None:
        full = self._declare(name, "counter", help)
        series = self._values.setdefault(full, {})
        key = _labels(labels)
        series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, help: str = "", **labels: str) -> None:
        full = self._declare(name, "gauge", help)
        self._values.setdefault(full, {})[_labels(labels)] = value

    def observe(self, name: str, value: float, help: str = "", **labels: str) -> None:
        full = self._declare(name, "histogram", help)
        hist = self._hists.setdefault(full, {}).setdefault(_labels(labels), Histogram())
        hist.observe(value)

    def value(self, name: str, **labels: str) -> float:
        return self._values.get(f"{self.namespace}_{name}", {}).get(_labels(labels), 0.0)

    def render(self) -> str:
        out: list[str] = []
        for full, (kind, help_text) in sorted(self._kinds.items()):
            out.append(f"# HELP {full} {help_text or full}")
            out.append(f"# TYPE {full} {kind}")
            for labels, v in sorted(self._values.get(full, {}).items()):
                out.append(f"{full}{_fmt_labels(labels)} {_num(v)}")
            for labels, h in sorted(self._hists.get(full, {}).items()):
                cumulative = 0
                for bound, count in zip((*h.buckets, math.inf), h.counts, strict=True):
                    cumulative += count
                    le = _fmt_labels(labels, [("le", _num(bound))])
                    out.append(f"{full}_bucket{le} {cumulative}")
                out.append(f"{full}_sum{_fmt_labels(labels)} {_num(h.total)}")
                out.append(f"{full}_count{_fmt_labels(labels)} {h.n}")
        return "\n".join(out) + "\n"


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

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8",
                            headers={"X-Prometheus-Format": "0.0.4"})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)


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
