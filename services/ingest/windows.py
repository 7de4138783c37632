"""Per-GPU tumbling windows over event time, one set per Kafka partition.

A partition's watermark is the newest sample timestamp seen on it. A window closes when the
watermark passes its end plus the grace period; until then late samples still update it. A
sample for a window already closed is counted (``too_late``), not silently lost. Windows are
pure state: the same records in the same order give the same windows, which is what lets a
restarted worker rebuild them by re-reading its partitions.

Energy comes from NVML's cumulative counter. Each GPU's last reading (newest sample time) is
kept per partition, and each newer sample adds ``max(0, e - last)`` to the window it falls in,
so the energy between two windows' samples is not lost. A first sample, a decrease (the
counter reset: driver reload), another GPU under the same index, or a gap longer than
``energy_gap_s`` adds 0; a sample not newer than the last reading (late, duplicate) adds 0
and leaves the last reading alone, so nothing is counted twice; a sample too late for its
window leaves it alone too, so its energy goes to the next sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gpufleet.contracts import NodeSample

GpuKey = tuple[str, str, int]  # cluster, node, gpu index
Point = tuple[int, float]  # an offset, and the partition's watermark just before it


@dataclass(slots=True)
class Meter:
    """A GPU's last energy-counter reading (the newest sample time), and where its record is."""

    ts: float = -math.inf
    energy_mj: int | None = None
    uuid: str = ""
    point: Point = (0, 0.0)


@dataclass(slots=True)
class GpuWindow:
    """What one GPU accumulates over one window."""

    uuid: str = ""
    samples: int = 0
    utils: list[float] = field(default_factory=list)
    mem_sum: float = 0.0
    mem_n: int = 0
    power_sum: float = 0.0
    power_n: int = 0
    energy_mj: int = 0
    meter: Meter = field(default_factory=Meter)  # the GPU's, shared by its windows


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


def close(key: GpuKey, start: float, window_s: int, window: GpuWindow) -> ClosedWindow:
    u = window.utils
    return ClosedWindow(
        key=key, window_start=start, window_s=window_s, uuid=window.uuid, samples=window.samples,
        util_mean=sum(u) / len(u) if u else 0.0, util_min=min(u) if u else 0.0,
        util_max=max(u) if u else 0.0, util_p95=p95(u),
        mem_used_bytes_mean=window.mem_sum / window.mem_n if window.mem_n else 0.0,
        power_mw_mean=window.power_sum / window.power_n if window.power_n else 0.0,
        energy_mj=window.energy_mj,
    )


@dataclass
class PartitionWindows:
    """Open windows of one partition, keyed by window start, then by GPU."""

    window_s: int
    grace_s: float
    energy_gap_s: float = 120.0  # readings further apart than this: the energy between is unknown
    watermark: float = 0.0
    open: dict[float, dict[GpuKey, GpuWindow]] = field(default_factory=dict)
    # window start -> where a re-read must start to rebuild it: its first record, or earlier
    # the record of the last energy reading one of its samples was measured against
    first: dict[float, Point] = field(default_factory=dict)
    meters: dict[GpuKey, Meter] = field(default_factory=dict)
    too_late: int = 0

    def add(self, msg: NodeSample, offset: int = 0) -> bool:
        """Fold one node sample (all its GPUs) into its window; False when it is too late."""
        ts = msg.ts
        start = ts - ts % self.window_s
        if start + self.window_s + self.grace_s <= self.watermark:
            self.too_late += len(msg.gpus)
            return False
        point = (offset, self.watermark)
        gpus = self.open.get(start)
        if gpus is None:
            gpus = self.open[start] = {}
            self.first[start] = point
        if ts > self.watermark:
            self.watermark = ts
        cluster, node, gap = msg.cluster, msg.node, self.energy_gap_s
        for g in msg.gpus:  # the hot loop of ingest: folding inlined
            key = (cluster, node, g.index)
            window = gpus.get(key)
            if window is None:
                window = gpus[key] = GpuWindow(uuid=g.uuid, meter=self._meter(key))
            window.samples += 1
            if (util := g.util_gpu) is not None:
                window.utils.append(util)
            if (mem := g.mem_used_bytes) is not None:
                window.mem_sum += mem
                window.mem_n += 1
            if (power := g.power_mw) is not None:
                window.power_sum += power
                window.power_n += 1
            if (energy := g.energy_mj) is None:
                continue
            # what the counter grew since the GPU's last reading, if this one is newer
            m = window.meter
            if ts <= m.ts:
                continue  # late or repeated: its energy is in a newer reading already
            if m.energy_mj is not None and ts - m.ts <= gap and g.uuid == m.uuid:
                if energy > m.energy_mj:  # a decrease is a counter reset: adds 0
                    window.energy_mj += energy - m.energy_mj
                if m.ts < start and m.point < self.first[start]:
                    self.first[start] = m.point  # a re-read must start there to measure this
            m.ts, m.energy_mj, m.uuid, m.point = ts, energy, g.uuid, point
        return True

    def _meter(self, key: GpuKey) -> Meter:
        m = self.meters.get(key)
        if m is None:
            m = self.meters[key] = Meter()
        return m

    def _horizon(self) -> float:
        """Readings older than this are of no more use: a sample not too late for its window
        is newer than watermark - window - grace, so more than ``energy_gap_s`` after such a
        reading, and adds 0 whether the reading is there or not."""
        return self.watermark - self.window_s - self.grace_s - self.energy_gap_s

    def resume_point(self) -> Point | None:
        """Where to re-read from to rebuild the open windows and the energy readings a later
        sample may be measured against: (offset, watermark then)."""
        points = [self.first[s] for s in self.open]
        horizon = self._horizon()
        points.extend(m.point for m in self.meters.values() if m.ts >= horizon)
        return min(points) if points else None

    def closable(self) -> list[ClosedWindow]:
        """Close and return every window the watermark has passed (plus grace)."""
        out: list[ClosedWindow] = []
        limit = self.watermark - self.grace_s - self.window_s
        for start in sorted(s for s in self.open if s <= limit):
            del self.first[start]
            for key, window in self.open.pop(start).items():
                out.append(close(key, start, self.window_s, window))
        return out

