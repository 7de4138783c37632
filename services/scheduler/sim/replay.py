"""Time-based replay: tasks arrive at their trace times, run for their trace runtimes and leave;
the scheduler core (the same one the service runs) places them, with its queue, backfill and
all. Reports job completion time, queueing delay and GPU utilization.

With a ``LoopConfig`` every job also carries a utilization profile (``utilization.py``), and the
report says how much of the allocated GPU time was busy; with the loop on, idle jobs are
reclaimed by the analytics' reclaim core (``loop.py``) and requeued or stopped."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from gpufleet.contracts import JobEvent, JobState, Message, Placement, StopJob, SubmitJob
from services.ingest.analytics.policy import Policies
from services.scheduler.cluster import Cluster, NodeSpec
from services.scheduler.config import SchedulerSettings
from services.scheduler.core import SchedulerCore
from services.scheduler.loopstops import LoopStop
from services.scheduler.profile import build_profile
from services.scheduler.sim.load import arrival_window
from services.scheduler.sim.loop import (
    Attempt,
    LoopConfig,
    Reclaimed,
    feed,
    next_window,
    reclaimed,
    start_attempt,
)
from services.scheduler.sim.policies import POLICIES, typical
from services.scheduler.sim.trace import Task
from services.scheduler.sim.utilization import Profile, draw

Progress = Callable[[int, int], None]
# time, order, kind, job, attempt, minute, level
Event = tuple[float, int, str, str, int, int, float]


@dataclass(frozen=True)
class JobTimes:
    job_id: str
    arrival: float
    start: float | None
    end: float | None
    kind: str = ""  # utilization profile, when the replay has them
    attempts: int = 1
    stopped: bool = False  # reclaimed and not restartable: it never finished

    @property
    def queue_s(self) -> float | None:
        return None if self.start is None else self.start - self.arrival

    @property
    def jct_s(self) -> float | None:
        return None if self.end is None or self.stopped else self.end - self.arrival


@dataclass(frozen=True)
class Usage:
    """GPU time over the arrival window: allocated, and busy by the jobs' profiles."""

    allocated_gpu_s: float
    busy_gpu_s: float
    reclaims: list[Reclaimed] = field(default_factory=list)

    @property
    def busy_share_pct(self) -> float:
        return 100.0 * self.busy_gpu_s / self.allocated_gpu_s if self.allocated_gpu_s else 0.0


@dataclass(frozen=True)
class Replay:
    policy: str
    jobs: list[JobTimes]
    utilization_pct: float  # GPU share allocated, time-weighted over the arrival window
    usage: Usage | None = None
    label: str = ""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def replay(policy: str, nodes: Sequence[NodeSpec], tasks: Sequence[Task],
           progress: Progress | None = None, speedup: float = 1.0, tick_s: float = 0.0,
           loop: LoopConfig | None = None, profiles: Mapping[str, Profile] | None = None
           ) -> Replay:
    """``speedup`` > 1 brings arrivals closer together (runtimes stay), to load the cluster;
    ``tick_s`` > 0 runs one cycle for all the events of a tick (a busy queue replays faster).
    With ``loop``, each job's profile is drawn (``profiles`` gives some jobs theirs)."""
    gpu_tasks = sorted((replace(t, created=t.created / speedup) for t in tasks if t.num_gpu > 0),
                       key=lambda t: t.created)
    run = _Run(policy, nodes, gpu_tasks, loop, progress)
    run.profiles.update(profiles or {})
    return run.run(tick_s)


class _Run:
    def __init__(self, policy: str, nodes: Sequence[NodeSpec], tasks: list[Task],
                 loop: LoopConfig | None, progress: Progress | None) -> None:
        self.policy, self.loop, self.progress = policy, loop, progress
        self.clock = Clock()
        settings = SchedulerSettings(scheduler_scores=",".join(POLICIES[policy]),
                                     scheduler_preemption=False)
        self.cluster = Cluster()
        for spec in nodes:
            self.cluster.upsert(spec)
        self.core = SchedulerCore(build_profile(settings, typical(tasks)), self.clock,
                                  self.cluster)
        self.tasks = tasks
        self.by_name = {t.name: t for t in tasks}
        self.heap: list[Event] = [(t.created, 0, "arrive", t.name, 0, 0, 0.0) for t in tasks]
        heapq.heapify(self.heap)
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}
        self.attempts: dict[str, int] = {}
        self.stopped: set[str] = set()
        self.live: dict[str, Attempt] = {}  # the attempt of each running job (loop replays)
        self.resume: dict[str, int] = {}  # profile minute a requeued job resumes at
        self.profiles: dict[str, Profile] = {} if loop is None else {
            t.name: draw(t.name, t.runtime_s or 1.0, loop.seed, restartable=loop.restartable)
            for t in tasks}
        self.policies = loop.parsed() if loop is not None and loop.reclaim else Policies()
        self.first, self.last = arrival_window([t.created for t in tasks])
        self.allocated = self.busy = 0.0
        self.reclaims: list[Reclaimed] = []

    def run(self, tick_s: float) -> Replay:
        area = 0.0
        accounted = self.first  # GPU share x time is summed up to here
        done = 0
        while self.heap:
            t = self.heap[0][0]
            used = self.cluster.used_milli()
            while self.heap and self.heap[0][0] <= t + tick_s:  # one cycle per tick's events
                done += self._step(heapq.heappop(self.heap))
            now = self.clock.now
            area += used * max(min(now, self.last) - max(accounted, self.first), 0.0)
            accounted = max(accounted, now)
            if self.core.dirty:
                self._placed(self.core.cycle())
            if self.progress is not None and done % 500 == 0:
                self.progress(done, len(self.tasks))
        return self._result(area)

    def _step(self, ev: Event) -> int:
        """One event; 1 when a job ended."""
        self.clock.now, _, kind, name, attempt, minute, level = ev
        if kind == "arrive":
            self.core.handle(SubmitJob(job=self.by_name[name].spec(name)))
            return 0
        if self.attempts.get(name) != attempt or name in self.end:
            return 0  # an event of an attempt that was reclaimed
        if kind == "leave":
            self._finish(name, JobState.SUCCEEDED)
            return 1
        a = self.live[name]
        stop = feed(a, self.policies, minute, level, self.core.running, self.cluster.names)
        if stop is None:
            self._next_window(a)
            return 0
        return self._reclaim(a, stop, minute)

    def _finish(self, name: str, state: JobState) -> None:
        attempt = self.attempts[name]
        self.end[name] = self.clock.now
        a = self.live.pop(name, None)
        if a is not None:
            self._account(a)
        self.core.handle(JobEvent(job_id=name, state=state, source="sim", attempt=attempt))

    def _reclaim(self, a: Attempt, stop: LoopStop, minute: int) -> int:
        assert self.loop is not None
        rec, resume = reclaimed(a, stop, minute, self.clock.now, self.loop.busy_util,
                                self.last)
        self.reclaims.append(rec)
        if not stop.requeue:
            self.stopped.add(a.job_id)
            self._finish(a.job_id, JobState.CANCELLED)
            return 1
        self._account(self.live.pop(a.job_id))
        self.resume[a.job_id] = resume
        self.attempts[a.job_id] = -1  # until it is placed again
        self.core.handle(JobEvent(job_id=a.job_id, state=JobState.PREEMPTED, source="sim",
                                  attempt=a.attempt))
        return 0

    def _placed(self, out: list[Message]) -> None:
        members: dict[str, list[Placement]] = {}
        for msg in out:
            if isinstance(msg, Placement):
                members.setdefault(msg.job.job_id, []).append(msg)
            elif isinstance(msg, StopJob):
                self.core.handle(JobEvent(job_id=msg.job_id, state=JobState.PREEMPTED,
                                          source="sim",
                                          attempt=self.core.records[msg.job_id].attempt))
        now = self.clock.now
        for name, placements in members.items():
            self.start.setdefault(name, now)
            attempt = placements[0].attempt
            self.attempts[name] = attempt
            offset = self.resume.get(name, 0)
            runtime = self.by_name[name].runtime_s or 1.0
            remaining = max(runtime - offset * 60, 1.0)
            heapq.heappush(self.heap, (now + remaining, 1, "leave", name, attempt, 0, 0.0))
            if self.loop is not None:
                a = start_attempt(placements, self.profiles[name], offset, now, remaining,
                                  self.policies)
                self.live[name] = a
                self._next_window(a)

    def _next_window(self, a: Attempt) -> None:
        nxt = next_window(a)
        if nxt is not None:
            at, minute, level = nxt
            heapq.heappush(self.heap, (at, 0, "window", a.job_id, a.attempt, minute, level))

    def _account(self, a: Attempt) -> None:
        """Allocated and busy GPU time of an attempt that ends now, within the arrival window."""
        t0, t1 = max(a.start, self.first), min(self.clock.now, self.last)
        if t1 <= t0:
            return
        m0 = a.offset + int((t0 - a.start) // 60)
        m1 = a.offset + int((t1 - a.start) // 60)
        assert self.loop is not None
        busy_s = a.profile.busy_minutes(m0, m1, self.loop.busy_util) * 60.0
        self.allocated += a.demand_gpus * (t1 - t0)
        self.busy += a.demand_gpus * min(busy_s, t1 - t0)

    def _result(self, area: float) -> Replay:
        jobs = [JobTimes(t.name, t.created, self.start.get(t.name), self.end.get(t.name),
                         self.profiles[t.name].kind if t.name in self.profiles else "",
                         self.core.records[t.name].attempt + 1 if t.name in self.core.records
                         else 1, t.name in self.stopped) for t in self.tasks]
        span = self.last - self.first
        capacity = max(self.cluster.capacity_milli(), 1)
        usage = None if self.loop is None else Usage(self.allocated, self.busy, self.reclaims)
        label = "" if self.loop is None else ("loop on" if self.loop.reclaim else "loop off")
        return Replay(self.policy, jobs, 100.0 * area / capacity / span if span > 0 else 0.0,
                      usage, label)
