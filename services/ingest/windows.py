"""Per-GPU tumbling windows over event time, one set per Kafka partition.

A partition's watermark is the newest sample timestamp seen on it. A window closes when the
watermark passes its end plus the grace period; until then late samples still update it. A
sample for a window already closed is counted (``too_late``), not silently lost. Windows are
pure state: the same records in the same order give the same windows, which is what lets a
restarted worker rebuild them by re-reading its partitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gpufleet.contracts import NodeSample

GpuKey = tuple[str, str, int]  # cluster, node, gpu index


@dataclass(slots=True)
class Acc:
    """What one GPU accumulates over one window."""

    uuid: str = ""
    samples: int = 0
    utils: list[float] = field(default_factory=list)
    mem_sum: float = 0.0
    mem_n: int = 0
    power_sum: float = 0.0
    power_n: int = 0
    energy_lo: int | None = None
    energy_hi: int | None = None


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    key: GpuKey
    window_start: float
    window_s: int
    uuid: str
    samples: int
    util_mean: float
    util_min: float
    util_max: float
    util_p95: float
    mem_used_bytes_mean: float
    power_mw_mean: float
    energy_mj: int


def p95(values: list[float]) -> float:
    """The 95th percentile, nearest-rank (the value below which 95% of samples fall)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(0.95 * len(ordered)))
    return ordered[rank - 1]


def close(key: GpuKey, start: float, window_s: int, acc: Acc) -> ClosedWindow:
    u = acc.utils
    energy = 0
    if acc.energy_lo is not None and acc.energy_hi is not None:
        energy = max(0, acc.energy_hi - acc.energy_lo)
    return ClosedWindow(
        key=key, window_start=start, window_s=window_s, uuid=acc.uuid, samples=acc.samples,
        util_mean=sum(u) / len(u) if u else 0.0, util_min=min(u) if u else 0.0,
        util_max=max(u) if u else 0.0, util_p95=p95(u),
        mem_used_bytes_mean=acc.mem_sum / acc.mem_n if acc.mem_n else 0.0,
        power_mw_mean=acc.power_sum / acc.power_n if acc.power_n else 0.0,
        energy_mj=energy,
    )


@dataclass
class PartitionWindows:
    """Open windows of one partition, keyed by window start, then by GPU."""

    window_s: int
    grace_s: float
    watermark: float = 0.0
    open: dict[float, dict[GpuKey, Acc]] = field(default_factory=dict)
    # window start -> (offset of its first record, the watermark just before it)
    first: dict[float, tuple[int, float]] = field(default_factory=dict)
    too_late: int = 0

    def add(self, msg: NodeSample, offset: int = 0) -> bool:
        """Fold one node sample (all its GPUs) into its window; False when it is too late."""
        ts = msg.ts
        start = ts - ts % self.window_s
        if start + self.window_s + self.grace_s <= self.watermark:
            self.too_late += len(msg.gpus)
            return False
        accs = self.open.get(start)
        if accs is None:
            accs = self.open[start] = {}
            self.first[start] = (offset, self.watermark)
        if ts > self.watermark:
            self.watermark = ts
        cluster, node = msg.cluster, msg.node
        for g in msg.gpus:
            key = (cluster, node, g.index)
            acc = accs.get(key)
            if acc is None:
                acc = accs[key] = Acc(uuid=g.uuid)
            _fold(acc, g.util_gpu, g.mem_used_bytes, g.power_mw, g.energy_mj)
        return True

    def resume_point(self) -> tuple[int, float] | None:
        """Where to re-read from to rebuild the open windows: (offset, watermark then)."""
        points = [self.first[s] for s in self.open]
        return min(points) if points else None

    def closable(self) -> list[ClosedWindow]:
        """Close and return every window the watermark has passed (plus grace)."""
        out: list[ClosedWindow] = []
        limit = self.watermark - self.grace_s - self.window_s
        for start in sorted(s for s in self.open if s <= limit):
            del self.first[start]
            for key, acc in self.open.pop(start).items():
                out.append(close(key, start, self.window_s, acc))
        return out


def _fold(acc: Acc, util: float | None, mem: int | None, power: int | None,
          energy: int | None) -> None:
    acc.samples += 1
    if util is not None:
        acc.utils.append(util)
    if mem is not None:
        acc.mem_sum += mem
        acc.mem_n += 1
    if power is not None:
        acc.power_sum += power
        acc.power_n += 1
    if energy is not None:
        if acc.energy_lo is None or energy < acc.energy_lo:
            acc.energy_lo = energy
        if acc.energy_hi is None or energy > acc.energy_hi:
            acc.energy_hi = energy
