"""The closed loop in the simulator: each running job's GPU windows, made from its profile, go
to the analytics' reclaim core (``services/ingest/analytics/reclaim.py``, the same pure core the
faust app runs); its requests go through the scheduler's own check (``loopstops``), and a job
to stop is stopped the way its executor would report it: ``preempted`` (the core requeues it,
attempt + 1) when it is restartable, else ``cancelled`` (its GPUs are freed, it is not run
again).

Windows are per minute, one GPU per job (every GPU of a job follows the job's profile, so its
other GPUs would decide the same). Every minute of an idle or rising phase is fed; of a flat
busy phase only the first and the last minute: the windows between change nothing in the
reclaim core (a busy window ends an idle streak, withdraws a warning and moves "busy until" to
its end, and the first and last do all of that).

A requeued job resumes, when placed again, at its next busy minute: its work so far is kept
(it checkpoints) and the idle gap it was reclaimed in is not waited out again. With no busy
minute left it ends as soon as it is placed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from gpufleet.contracts import GpuRef, GpuUtilWindow, Placement, ReclaimRequest
from services.ingest.analytics.jobs import JobRecord
from services.ingest.analytics.policy import DEFAULT_POLICIES, Policies, parse_policies
from services.ingest.analytics.reclaim import ReclaimState, observe
from services.scheduler.framework import Running
from services.scheduler.loopstops import LoopStop, reclaim_stops
from services.scheduler.sim.utilization import RESTARTABLE, Profile

WINDOW_S = 60
CLUSTER = "sim"


@dataclass(frozen=True)
class LoopConfig:
    """Profiles for every job; ``reclaim`` on or off (the loop off: measured, never acted on)."""

    reclaim: bool = False
    policies: str = DEFAULT_POLICIES
    seed: int = 0
    restartable: float = RESTARTABLE
    busy_util: float = 5.0  # percent: a minute at or over it counts as busy in the report

    def parsed(self) -> Policies:
        return parse_policies(self.policies)


@dataclass(frozen=True)
class Reclaimed:
    job_id: str
    attempt: int
    at: float
    requeue: bool
    kind: str  # the job's profile kind
    idle_min: int  # minutes under the threshold that led to it (by the profile, not the core)
    freed_gpu_s: float  # GPU-seconds it would have held idle (up to the window's end) if left


@dataclass
class Attempt:
    job_id: str
    attempt: int
    start: float  # simulated time it was placed
    offset: int  # minute of its profile it started at
    end_minute: int  # its profile's minutes this attempt may feed (complete windows)
    demand_gpus: float
    profile: Profile
    record: JobRecord
    feed: Iterator[tuple[int, float]]
    state: ReclaimState | None = None
    gpu: GpuRef = field(default_factory=lambda: GpuRef(node="-", gpu=0))

    def at(self, minute: int) -> float:
        """Simulated time at the end of the window of profile minute ``minute``."""
        return self.start + (minute - self.offset + 1) * WINDOW_S


def to_feed(profile: Profile, start: int, end: int, min_util: float
            ) -> Iterator[tuple[int, float]]:
    """(minute, level) of the windows to feed for minutes [start, end) under a policy whose
    threshold is ``min_util``."""
    for p in profile.phases:
        lo, hi = max(p.start, start), min(p.end, end)
        if lo >= hi:
            continue
        if p.to == p.level and p.level >= min_util and hi - lo > 2:
            yield lo, p.level
            yield hi - 1, p.level
        else:
            for m in range(lo, hi):
                yield m, p.at(m)


def start_attempt(placements: Sequence[Placement], profile: Profile, offset: int, now: float,
                  remaining_s: float, policies: Policies) -> Attempt:
    """A placed job's attempt; it feeds no windows when no policy covers it."""
    spec = placements[0].job
    gpus = [GpuRef(node=p.node, gpu=g) for p in placements for g in p.gpus]
    record = JobRecord(job_id=spec.job_id, tenant=spec.tenant, queue=spec.queue,
                       gpus_requested=spec.gpus * spec.gang, gpu_milli=placements[0].gpu_milli,
                       restartable=profile.restartable, attempt=placements[0].attempt,
                       gpus=gpus, started_at=now)
    end_minute = offset + int(remaining_s // WINDOW_S)
    demand = sum(len(p.gpus) * p.gpu_milli for p in placements) / 1000
    policy = policies.for_job(spec.queue, spec.tenant)
    windows = iter(()) if policy is None else to_feed(profile, offset, end_minute,
                                                      policy.min_util)
    return Attempt(spec.job_id, placements[0].attempt, now, offset, end_minute, demand, profile,
                   record, windows, gpu=gpus[0])


def next_window(a: Attempt) -> tuple[float, int, float] | None:
    """(time, minute, level) of the attempt's next window to feed, or None."""
    nxt = next(a.feed, None)
    return None if nxt is None else (a.at(nxt[0]), nxt[0], nxt[1])


def feed(a: Attempt, policies: Policies, minute: int, level: float, running: dict[str, Running],
         names: Sequence[str]) -> LoopStop | None:
    """One window of the attempt into the reclaim core; the stop it leads to, if any."""
    policy = policies.for_job(a.record.queue, a.record.tenant)
    start = a.at(minute) - WINDOW_S
    w = GpuUtilWindow(cluster=CLUSTER, node=a.gpu.node, gpu=a.gpu.gpu, window_start=start,
                      window_s=WINDOW_S, samples=WINDOW_S, util_mean=level, util_min=level,
                      util_max=level, util_p95=level, job_id=a.job_id, tenant=a.record.tenant)
    a.state, out = observe(a.state, a.record, policy, w)
    for msg in out:
        if isinstance(msg, ReclaimRequest):
            decided = reclaim_stops(msg, running, names, enabled=True)
            return decided if isinstance(decided, LoopStop) else None
    return None


def reclaimed(a: Attempt, stop: LoopStop, minute: int, now: float, busy_util: float,
              until: float) -> tuple[Reclaimed, int]:
    """What a reclaim at the window of ``minute`` took (idle GPU time it spares up to
    ``until``), and the profile minute the job resumes at if it is requeued."""
    resume = a.profile.next_busy(minute + 1, busy_util)
    idle_from = minute
    while idle_from > a.offset and _level(a.profile, idle_from - 1) < busy_util:
        idle_from -= 1
    last = min(a.profile.minutes, minute + 1 + max(0, int((until - now) // WINDOW_S)))
    spared = (min(resume, last) - (minute + 1)) if stop.requeue else (
        last - (minute + 1) - a.profile.busy_minutes(minute + 1, last, busy_util))
    return Reclaimed(a.job_id, a.attempt, now, stop.requeue, a.profile.kind,
                     minute + 1 - idle_from, max(0, spared) * WINDOW_S * a.demand_gpus), resume


def _level(profile: Profile, minute: int) -> float:
    return next((lvl for _, lvl in profile.minutes_of(minute, minute + 1)), 0.0)
