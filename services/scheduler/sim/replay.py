"""Time-based replay: tasks arrive at their trace times, run for their trace runtimes and leave;
the scheduler core (the same one the service runs) places them, with its queue, backfill and
all. Reports job completion time, queueing delay and GPU utilization."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from gpufleet.contracts import JobEvent, JobState, Placement, StopJob, SubmitJob
from services.scheduler.cluster import Cluster, NodeSpec
from services.scheduler.config import SchedulerSettings
from services.scheduler.core import SchedulerCore
from services.scheduler.profile import build_profile
from services.scheduler.sim.policies import POLICIES, typical
from services.scheduler.sim.trace import Task

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class JobTimes:
    job_id: str
    arrival: float
    start: float | None
    end: float | None

    @property
    def queue_s(self) -> float | None:
        return None if self.start is None else self.start - self.arrival

    @property
    def jct_s(self) -> float | None:
        return None if self.end is None else self.end - self.arrival


@dataclass(frozen=True)
class Replay:
    policy: str
    jobs: list[JobTimes]
    utilization_pct: float  # GPU share allocated, time-weighted from first to last arrival


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def replay(policy: str, nodes: Sequence[NodeSpec], tasks: Sequence[Task],
           progress: Progress | None = None, speedup: float = 1.0, tick_s: float = 0.0
           ) -> Replay:
    """``speedup`` > 1 brings arrivals closer together (runtimes stay), to load the cluster;
    ``tick_s`` > 0 runs one cycle for all the events of a tick (a busy queue replays faster)."""
    gpu_tasks = sorted((replace(t, created=t.created / speedup) for t in tasks if t.num_gpu > 0),
                       key=lambda t: t.created)
    clock = Clock()
    settings = SchedulerSettings(scheduler_scores=",".join(POLICIES[policy]),
                                 scheduler_preemption=False)
    cluster = Cluster()
    for spec in nodes:
        cluster.upsert(spec)
    core = SchedulerCore(build_profile(settings, typical(tasks)), clock, cluster)
    heap: list[tuple[float, int, str, str]] = [(t.created, 0, "arrive", t.name) for t in gpu_tasks]
    heapq.heapify(heap)
    by_name = {t.name: t for t in gpu_tasks}
    start: dict[str, float] = {}
    end: dict[str, float] = {}
    capacity = max(cluster.capacity_milli(), 1)
    area = 0.0
    done = 0
    first = gpu_tasks[0].created if gpu_tasks else 0.0
    last = gpu_tasks[-1].created if gpu_tasks else 0.0
    accounted = first  # GPU share x time is summed up to here
    while heap:
        t = heap[0][0]
        used = cluster.used_milli()
        while heap and heap[0][0] <= t + tick_s:  # one cycle for the events of one tick
            clock.now, _, kind, name = heapq.heappop(heap)
            if kind == "arrive":
                core.handle(SubmitJob(job=by_name[name].spec(name)))
            else:
                end[name] = clock.now
                done += 1
                core.handle(JobEvent(job_id=name, state=JobState.SUCCEEDED, source="sim",
                                     attempt=core.records[name].attempt))
        area += used * max(min(clock.now, last) - max(accounted, first), 0.0)
        accounted = max(accounted, clock.now)
        for msg in core.cycle() if core.dirty else []:
            if isinstance(msg, Placement) and msg.member == 0:
                start[msg.job.job_id] = clock.now
                runtime = by_name[msg.job.job_id].runtime_s or 1.0
                heapq.heappush(heap, (clock.now + runtime, 1, "leave", msg.job.job_id))
            elif isinstance(msg, StopJob):
                core.handle(JobEvent(job_id=msg.job_id, state=JobState.PREEMPTED, source="sim",
                                     attempt=core.records[msg.job_id].attempt))
        if progress is not None and done % 500 == 0:
            progress(done, len(gpu_tasks))
    jobs = [JobTimes(t.name, t.created, start.get(t.name), end.get(t.name)) for t in gpu_tasks]
    span = last - first
    return Replay(policy, jobs, 100.0 * area / capacity / span if span > 0 else 0.0)
