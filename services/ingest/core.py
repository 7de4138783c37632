"""The pure heart of ingest: records in, rows, windows and alerts out. No I/O.

The driver hands it decoded messages per source partition and asks it, once per batch, for
what closed. Everything here is deterministic in the order of the records, so a worker that
re-reads a partition from an earlier offset rebuilds the same state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from gpufleet.contracts import Alert, GpuUtilWindow, JobEvent, NodeSample, Placement

from .alerts import IdleTracker
from .attribution import JobIndex
from .rows import SampleRows
from .validate import event_reason, sample_reason
from .windows import ClosedWindow, PartitionWindows


@dataclass(frozen=True)
class Params:
    window_s: int = 60
    grace_s: float = 30.0
    max_future_s: float = 300.0
    idle_util_threshold: float = 5.0
    idle_after_s: float = 600.0
    job_retention_s: float = 86_400.0
    job_lease_s: float = 60.0
    energy_gap_s: float = 120.0


@dataclass
class Derived:
    """What closing windows produced: rows for gpu_util_1m / gpu.util, and alerts."""

    windows: list[GpuUtilWindow] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


def window_event_id(w: ClosedWindow) -> str:
    cluster, node, gpu = w.key
    text = f"{cluster}:{node}:{gpu}:{int(w.window_start)}:{w.window_s}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass
class Ingest:
    params: Params
    cluster: str = "local"
    windows: dict[object, PartitionWindows] = field(default_factory=dict)
    jobs: JobIndex = field(init=False)
    idle: IdleTracker = field(init=False)
    late_dropped: int = 0

    def __post_init__(self) -> None:
        self.jobs = JobIndex(retention_s=self.params.job_retention_s,
                             lease_s=self.params.job_lease_s)
        self.idle = IdleTracker(self.params.idle_util_threshold, self.params.idle_after_s)

    # -- checks -------------------------------------------------------------------------

    def sample_reason(self, msg: NodeSample, now: float) -> str | None:
        return sample_reason(msg, now, self.params.max_future_s)

    def event_reason(self, ev: JobEvent, now: float) -> str | None:
        return event_reason(ev, now, self.params.max_future_s)

    # -- samples ------------------------------------------------------------------------

    def partition(self, source: object) -> PartitionWindows:
        pw = self.windows.get(source)
        if pw is None:
            pw = self.windows[source] = PartitionWindows(
                self.params.window_s, self.params.grace_s, self.params.energy_gap_s)
        return pw

    def add_sample(self, source: object, msg: NodeSample, offset: int,
                   rows: SampleRows | None) -> None:
        """Fold a valid sample into its window and (unless replaying) into raw rows."""
        if rows is not None:
            rows.add(msg)
        if not self.partition(source).add(msg, offset):
            self.late_dropped += len(msg.gpus)

    def close_windows(self, source: object, emit: bool = True) -> Derived:
        """Close what the partition's watermark has passed; attribute, alert and return it.

        With ``emit=False`` (re-reading to rebuild state) closed windows are dropped: they
        were written before the worker stopped.
        """
        out = Derived()
        for w in self.partition(source).closable():
            if not emit:
                continue
            _, node, gpu = w.key
            owner = self.jobs.owner(node, gpu, w.window_start, w.window_start + w.window_s)
            job_id = owner.job_id if owner else None
            tenant = owner.tenant if owner else None
            out.windows.append(self._window(w, job_id, tenant))
            out.alerts.extend(self.idle.observe(w.key, w.window_start, w.window_s,
                                                w.util_mean, job_id, tenant))
        return out

    def _window(self, w: ClosedWindow, job_id: str | None, tenant: str | None) -> GpuUtilWindow:
        cluster, node, gpu = w.key
        return GpuUtilWindow(
            cluster=cluster, node=node, gpu=gpu, uuid=w.uuid, window_start=w.window_start,
            window_s=w.window_s, samples=w.samples, util_mean=w.util_mean, util_min=w.util_min,
            util_max=w.util_max, util_p95=w.util_p95, mem_used_bytes_mean=w.mem_used_bytes_mean,
            power_mw_mean=w.power_mw_mean, energy_mj=w.energy_mj, job_id=job_id, tenant=tenant,
            ts=w.window_start + w.window_s, event_id=window_event_id(w),
        )

    def forget(self, source: object) -> None:
        """A partition went to another worker: drop its windows."""
        self.windows.pop(source, None)

    # -- jobs ---------------------------------------------------------------------------

    def on_event(self, ev: JobEvent) -> None:
        self.jobs.on_event(ev)

    def on_placement(self, p: Placement) -> None:
        self.jobs.on_placement(p)


def new_sample_columns() -> SampleRows:
    return SampleRows()
