"""One node's telemetry: its source, its inventory and its sample sequence, tick by tick."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpufleet.contracts import Alert, NodeInventory, NodeSample
from services.telemetry import core
from services.telemetry.sources import GpuSource


@dataclass
class Tick:
    sample: NodeSample
    inventory: NodeInventory | None = None  # set when it changed
    alerts: list[Alert] = field(default_factory=list)


class NodeTelemetry:
    def __init__(self, cluster: str, node: str, source: GpuSource,
                 processes_every_s: float = 5.0, health_every_s: float = 60.0) -> None:
        self.cluster = cluster
        self.node = node
        self.source = source
        self._cadence = core.Cadence(processes_every_s, health_every_s)
        self._seq = 0
        self._fired: set[str] = set()
        self.ident = source.identity()

    def inventory(self, now: float) -> NodeInventory:
        return core.inventory(self.cluster, self.node, self.ident, now)

    def tick(self, now: float) -> Tick:
        reading = self.source.read(now, self._cadence.due(now))
        self._seq += 1
        out = Tick(core.node_sample(self.cluster, self.node, self._seq, reading.gpus, now))
        if not reading.events:
            return out
        gpus, changed = core.apply_health(self.ident.gpus, reading.events)
        if changed:
            self.ident = type(self.ident)(gpus=gpus, driver_version=self.ident.driver_version)
            out.inventory = self.inventory(now)
        for ev in reading.events:
            alert = core.alert_for(self.cluster, self.node, ev, now)
            if alert.alert_id not in self._fired:
                self._fired.add(alert.alert_id)
                out.alerts.append(alert)
        return out
