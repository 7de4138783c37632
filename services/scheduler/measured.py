"""What the GPUs measurably do and which are drained: the closed loop's view for placement.

``MeasuredLoad`` keeps each GPU's latest closed window from ``gpu.util`` (p95 utilization and
memory in use); ``Drains`` keeps the GPUs drained by ``gpu.drains``. Both are pure values the
scheduler core feeds from its consumer and hands to a cycle through ``CycleState.memo`` (under
``MEASURED`` and ``DRAINS``), where the ``loadaware`` and ``drained`` plugins read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpufleet.contracts import GpuDrain, GpuUndrain, GpuUtilWindow, NodeInventory

from .cluster import NodeSpec

MEASURED = "measured"  # CycleState.memo key of a MeasuredLoad
DRAINS = "drains"  # CycleState.memo key of a Drains


@dataclass(frozen=True, slots=True)
class GpuLoad:
    util_p95: float  # percent
    mem_frac: float  # memory in use over memory total, 0..1 (0 when the total is unknown)
    at: float  # end of the window it comes from


SWEEP_ABOVE = 1024  # loads kept before the first sweep of stale ones


@dataclass
class MeasuredLoad:
    """Latest measured load per (node, GPU); older than ``max_age_s`` counts as unknown, and is
    dropped once the loads kept have doubled since the last sweep (a GPU, or a node name,
    that stops reporting is not kept for ever). The sweep measures age from ``now``, the
    scheduler's clock, so a window dated far ahead cannot age the rest."""

    max_age_s: float = 300.0
    gpus: dict[tuple[str, int], GpuLoad] = field(default_factory=dict)
    memory_total: dict[tuple[str, int], int] = field(default_factory=dict)
    sweep_above: int = SWEEP_ABOVE

    def observe(self, w: GpuUtilWindow, now: float) -> None:
        at = w.window_start + w.window_s
        key = (w.node, w.gpu)
        have = self.gpus.get(key)
        if have is not None and have.at >= at:
            return  # older or replayed
        total = self.memory_total.get(key, 0)
        frac = min(1.0, w.mem_used_bytes_mean / total) if total else 0.0
        self.gpus[key] = GpuLoad(util_p95=w.util_p95, mem_frac=frac, at=at)
        if len(self.gpus) > self.sweep_above:
            self.gpus = {k: v for k, v in self.gpus.items() if now - v.at <= self.max_age_s}
            self.sweep_above = max(2 * len(self.gpus), SWEEP_ABOVE)

    def observe_inventory(self, inv: NodeInventory) -> None:
        for g in inv.gpus:
            self.memory_total[(inv.node, g.index)] = g.memory_total_bytes

    def load(self, node: str, gpu: int, now: float) -> GpuLoad | None:
        have = self.gpus.get((node, gpu))
        return have if have is not None and now - have.at <= self.max_age_s else None


@dataclass
class Drains:
    """The GPUs drained now, with why (the drain's reason)."""

    gpus: dict[tuple[str, int], str] = field(default_factory=dict)

    def observe(self, msg: GpuDrain | GpuUndrain) -> None:
        if isinstance(msg, GpuDrain):
            self.gpus[(msg.node, msg.gpu)] = msg.reason
        else:
            self.gpus.pop((msg.node, msg.gpu), None)

    def on_node(self, node: str) -> dict[int, str]:
        return {g: why for (n, g), why in self.gpus.items() if n == node}

    def by_node(self) -> dict[str, dict[int, str]]:
        """Every drained GPU grouped by its node (one pass over the drains)."""
        out: dict[str, dict[int, str]] = {}
        for (node, g), why in self.gpus.items():
            out.setdefault(node, {})[g] = why
        return out

    def apply(self, spec: NodeSpec) -> NodeSpec:
        """The node as placement must see it: its drained GPUs unhealthy (no share to give)."""
        drained = self.on_node(spec.name)
        if not drained:
            return spec
        healthy = spec.healthy or tuple(True for _ in range(spec.gpus))
        marked = tuple(ok and g not in drained for g, ok in enumerate(healthy))
        return NodeSpec(name=spec.name, model=spec.model, gpus=spec.gpus,
                        cpu_milli=spec.cpu_milli, memory_mib=spec.memory_mib, healthy=marked,
                        domains=spec.domains, online=spec.online)
