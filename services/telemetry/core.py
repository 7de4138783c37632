"""The pure part of telemetry: cadence, node samples, health -> inventory and alerts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import msgspec

from gpufleet.contracts import (
    Alert,
    AlertState,
    GpuHealth,
    GpuInfo,
    GpuSample,
    NodeInventory,
    NodeSample,
)
from services.telemetry.sources import Due, HealthEvent, Identity

_RANK = {GpuHealth.OK: 0, GpuHealth.DEGRADED: 1, GpuHealth.LOST: 2}


@dataclass
class Cadence:
    """Decides which slower groups are due; the first tick collects everything."""

    processes_every_s: float
    health_every_s: float
    _last_processes: float | None = None
    _last_health: float | None = None

    def due(self, now: float) -> Due:
        processes = self._last_processes is None or (
            now - self._last_processes >= self.processes_every_s)
        health = self._last_health is None or now - self._last_health >= self.health_every_s
        if processes:
            self._last_processes = now
        if health:
            self._last_health = now
        return Due(processes=processes, health=health)


def node_sample(
    cluster: str, node: str, seq: int, gpus: list[GpuSample], ts: float
) -> NodeSample:
    return NodeSample(cluster=cluster, node=node, gpus=gpus, seq=seq, ts=ts)


def inventory(cluster: str, node: str, ident: Identity, ts: float) -> NodeInventory:
    return NodeInventory(cluster=cluster, node=node, gpus=list(ident.gpus),
                         driver_version=ident.driver_version, ts=ts,
                         labels={"model": ident.gpus[0].model} if ident.gpus else {})


def apply_health(
    gpus: list[GpuInfo], events: Iterable[HealthEvent]
) -> tuple[list[GpuInfo], bool]:
    """The GPUs after the events (health only gets worse here), and whether anything changed."""
    out = list(gpus)
    changed = False
    for ev in events:
        if not 0 <= ev.gpu < len(out):
            continue
        current = out[ev.gpu]
        if _RANK[ev.health] <= _RANK[current.health]:
            continue
        out[ev.gpu] = msgspec.structs.replace(current, health=ev.health, health_reason=ev.reason)
        changed = True
    return out, changed


def alert_for(cluster: str, node: str, ev: HealthEvent, ts: float) -> Alert:
    """A firing alert; its id is stable for one condition on one GPU."""
    condition = ev.kind if ev.kind != "xid" else f"xid-{ev.reason.split()[-1]}"
    return Alert(
        alert_id=f"{cluster}/{node}/gpu{ev.gpu}/{condition}", kind=ev.kind,
        state=AlertState.FIRING, severity=_severity(ev.severity), cluster=cluster, node=node,
        gpu=ev.gpu, message=ev.reason, since=ts, ts=ts,
    )


def _severity(s: str) -> Literal["info", "warning", "critical"]:
    if s == "info":
        return "info"
    return "critical" if s == "critical" else "warning"

