"""Where GPU readings come from: one small interface, two implementations (NVML, simulated)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from gpufleet.contracts import GpuHealth, GpuInfo, GpuSample


@dataclass(frozen=True)
class Due:
    """Which of the slower groups of readings this tick collects."""

    processes: bool = False
    health: bool = False


@dataclass(frozen=True)
class HealthEvent:
    """Something wrong with one GPU: it becomes an inventory change and an alert."""

    gpu: int
    health: GpuHealth
    kind: str  # the alert kind: gpu_lost, xid, nvml_error
    reason: str
    severity: str = "warning"  # info, warning, critical


@dataclass
class Reading:
    gpus: list[GpuSample]
    events: list[HealthEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Identity:
    gpus: list[GpuInfo]
    driver_version: str | None = None


class GpuSource(Protocol):
    def identity(self) -> Identity:
        """What the node has, read once at start."""
        ...

    def read(self, now: float, due: Due) -> Reading:
        """Every GPU at this tick; never raises for a GPU's fault."""
        ...

    def close(self) -> None: ...
