"""Right-sizing: what a job asked for against what its GPUs did.

Per job (and attempt) the closed windows of its GPUs are folded into: per GPU the windows,
mean and max utilization and the peak of the per-minute memory means; for the job a histogram
of the windows' p95 utilization (whole percent), from which the job's p95 is read. A GPU is
busy when its mean utilization over the job is at or over the threshold. The report says,
e.g., "asked 8 GPUs, 2 were busy, p95 31 %: ask for 2 GPUs".

Reports go out every ``every_s`` of event time while the job runs, and once (``final``) when
it ends. A window no newer than the last one of its GPU is a replay and changes nothing.
"""

from __future__ import annotations

import math

from msgspec import Struct, field

from gpufleet.contracts import GpuUtilWindow, RightSizingReport

from .idle import stable_event_id
from .jobs import JobRecord

BUCKETS = 101  # whole percent, 0..100


class GpuUse(Struct, kw_only=True):
    last_start: float = -1.0
    windows: int = 0
    util_sum: float = 0.0
    util_max: float = 0.0
    mem_peak: float = 0.0


class UsageState(Struct, kw_only=True):
    job_id: str
    attempt: int = 0
    gpus: dict[str, GpuUse] = field(default_factory=dict)  # "node/gpu"
    p95_hist: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    first_window: float | None = None
    last_end: float = 0.0
    reported_at: float | None = None
    final: bool = False
    window_s: int = 60


def observe(cur: UsageState | None, job: JobRecord | None, w: GpuUtilWindow) -> UsageState | None:
    """Fold one closed window attributed to a job into its usage."""
    if w.job_id is None:
        return cur
    attempt = job.attempt if job is not None else 0
    if cur is None or attempt > cur.attempt:
        cur = UsageState(job_id=w.job_id, attempt=attempt)
    use = cur.gpus.setdefault(f"{w.node}/{w.gpu}", GpuUse())
    if w.window_start <= use.last_start or cur.final:
        return cur
    use.last_start = w.window_start
    cur.window_s = w.window_s
    use.windows += 1
    use.util_sum += w.util_mean
    use.util_max = max(use.util_max, w.util_max)
    use.mem_peak = max(use.mem_peak, w.mem_used_bytes_mean)
    cur.p95_hist[min(BUCKETS - 1, max(0, round(w.util_p95)))] += 1
    cur.first_window = w.window_start if cur.first_window is None else min(
        cur.first_window, w.window_start)
    cur.last_end = max(cur.last_end, w.window_start + w.window_s)
    return cur


def due(cur: UsageState, every_s: float) -> bool:
    """A running job's report is due (event time)."""
    if cur.final or cur.first_window is None:
        return False
    since = cur.reported_at if cur.reported_at is not None else cur.first_window
    return cur.last_end - since >= every_s


def report(cur: UsageState, job: JobRecord | None, busy_threshold: float, final: bool,
           at: float) -> RightSizingReport:
    """The report as of now; marks it sent."""
    cur.reported_at, cur.final = cur.last_end, final
    uses = [u for u in cur.gpus.values() if u.windows]
    busy = sum(1 for u in uses if u.util_sum / u.windows >= busy_threshold)
    requested = (job.gpus_requested if job is not None and job.gpus_requested else len(uses))
    windows = sum(u.windows for u in uses)
    minutes = windows * cur.window_s / 60
    busy_minutes = sum(u.windows for u in uses if u.util_sum / u.windows >= busy_threshold
                       ) * cur.window_s / 60
    p95 = float(percentile(cur.p95_hist, 0.95))
    mean = sum(u.util_sum for u in uses) / windows if windows else 0.0
    recommended, text = recommend(requested, busy, p95, windows)
    return RightSizingReport(
        job_id=cur.job_id, tenant=job.tenant if job else None, queue=job.queue if job else None,
        final=final, gpus_requested=requested, gpu_milli=job.gpu_milli if job else 1000,
        gpus_seen=len(uses), gpus_busy=busy, windows=windows, gpu_minutes=minutes,
        busy_gpu_minutes=busy_minutes, util_mean=min(100.0, mean), util_p95=p95,
        util_max=max((u.util_max for u in uses), default=0.0),
        mem_peak_bytes=int(max((u.mem_peak for u in uses), default=0.0)),
        recommended_gpus=recommended, recommendation=text, ts=at,
        event_id=stable_event_id("rightsizing", cur.job_id, cur.attempt, windows, final))


def recommend(requested: int, busy: int, p95: float, windows: int) -> tuple[int, str]:
    """How many GPUs to ask for next time, and the sentence that says why."""
    if windows == 0:
        return requested, "no utilization measured yet"
    said = f"asked {requested} GPU{'s' if requested != 1 else ''}, {busy} "
    said += f"{'were' if busy != 1 else 'was'} busy, p95 {p95:.0f} %"
    if busy < requested:
        rec = max(1, busy)
        if rec < requested:
            return rec, f"{said}: ask for {rec} GPU{'s' if rec != 1 else ''}"
        return rec, f"{said}: could share a GPU (ask for a fraction)"
    if requested == 1 and p95 < 50:
        return 1, f"{said}: could share a GPU (ask for a fraction)"
    return requested, f"{said}: the size is right"


def percentile(hist: list[int], q: float) -> int:
    """The smallest bucket at or under which ``q`` of the counts fall."""
    total = sum(hist)
    if total == 0:
        return 0
    need = math.ceil(q * total)
    seen = 0
    for value, count in enumerate(hist):
        seen += count
        if seen >= need:
            return value
    return len(hist) - 1

