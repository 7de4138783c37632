"""The executor's job-state machine: placements, stops, exits and time in; actions out.

No I/O here. The driver carries out ``Launch``, ``Terminate`` and ``Adopt`` and publishes
each ``Emit``. A job on this node is keyed by (job id, gang member).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gpufleet.contracts import GPU_MILLI, JobEvent, JobState, Placement, StopJob
from gpufleet.running import gpu_loads

Key = tuple[str, int]  # (job id, member)
LOST_REASON = "executor restarted; job lost"
UNKNOWN_EXIT_REASON = "ended while adopted after an executor restart; exit status unknown"

# How a job that was stopped ends, by the stop's reason. A job stopped as ``lost`` was given up by
# the scheduler (its node was silent past the lease; its GPUs went to other jobs): it is stopped
# here and reported lost again, never as failed or cancelled.
STOPPED_AS = {"cancelled": JobState.CANCELLED, "preempted": JobState.PREEMPTED,
              "lost": JobState.LOST}


@dataclass(frozen=True)
class Launch:
    key: Key
    placement: Placement


@dataclass(frozen=True)
class Terminate:
    key: Key
    grace_s: float


@dataclass(frozen=True)
class Adopt:
    key: Key
    pid: int


@dataclass(frozen=True)
class Emit:
    event: JobEvent


Action = Launch | Terminate | Adopt | Emit


@dataclass
class RunningJob:
    placement: Placement
    since: float
    pid: int | None = None
    pid_start: int | None = None  # the process's start time, to tell a reused pid apart
    stop: StopJob | None = None
    last_beat: float = 0.0
    adopted: bool = False


@dataclass(frozen=True)
class Outcome:
    """What the driver found of a job saved before a restart."""

    alive: bool = False
    exit_code: int | None = None  # known when it ended


def event(p: Placement, state: JobState, ts: float, **extra: object) -> JobEvent:
    return JobEvent(job_id=p.job.job_id, state=state, tenant=p.job.tenant, node=p.node,
                    gpus=list(p.gpus), gpu_milli=p.gpu_milli, member=p.member,
                    attempt=p.attempt, source="executor", ts=ts, **extra)  # type: ignore[arg-type]


@dataclass
class ExecutorCore:
    node: str
    gpus: int
    heartbeat_s: float = 10.0
    max_placement_age_s: float = 600.0
    busy_wait_s: float = 30.0  # how long a placement waits for its GPUs' share to be freed
    needs_command: bool = True
    unhealthy: dict[int, str] = field(default_factory=dict)  # GPU -> why it is not usable
    jobs: dict[Key, RunningJob] = field(default_factory=dict)
    _done: OrderedDict[tuple[Key, int], None] = field(default_factory=OrderedDict)
    # a later attempt placed here while the earlier one is still being stopped: it starts
    # once that one has ended
    _next: dict[Key, Placement] = field(default_factory=dict)
    # placements whose GPUs are still held by jobs here, in arrival order, with the time they
    # stop waiting: after a restart the scheduler may give a GPU away before this node has
    # read the stop of the job that held it (another job's stop is on another partition)
    _waiting: dict[Key, tuple[Placement, float]] = field(default_factory=dict)
    # job -> (the latest attempt stopped before its placement was read here, the stop)
    _stopped: OrderedDict[str, tuple[int, StopJob]] = field(default_factory=OrderedDict)

    # inputs -----------------------------------------------------------------------------

    def on_placement(self, p: Placement, now: float) -> list[Action]:
        key = (p.job.job_id, p.member)
        held = self.jobs.get(key)
        if (p.node == self.node and held is not None and held.stop is not None
                and p.attempt > held.placement.attempt):
            self._next[key] = p
            return []
        waiting = self._waiting.get(key)
        if p.node != self.node or held is not None or (key, p.attempt) in self._done or (
                waiting is not None and waiting[0].attempt >= p.attempt):
            return []  # not ours, or delivered again
        if now - p.ts > self.max_placement_age_s:
            return []
        stopped = self._stopped.get(p.job.job_id)
        if stopped is not None and p.attempt <= stopped[0]:  # its stop was read first
            self._remember(key, p.attempt)
            return [Emit(event(p, STOPPED_AS[stopped[1].reason], now, reason=stopped[1].reason))]
        reason = self.refusal(p)
        if reason is not None and self.busy_only(p):
            self._waiting[key] = (p, now + self.busy_wait_s)
            return []
        return self._admit(key, p, reason, now)

    def _admit(self, key: Key, p: Placement, refused: str | None, now: float) -> list[Action]:
        self._waiting.pop(key, None)
        if refused is not None:
            self._remember(key, p.attempt)
            return [Emit(event(p, JobState.FAILED, now, reason=refused))]
        self.jobs[key] = RunningJob(placement=p, since=now)
        return [Launch(key, p)]

    def on_started(self, key: Key, pid: int | None, pid_start: int | None,
                   now: float) -> list[Action]:
        job = self.jobs.get(key)
        if job is None:
            return []
        job.pid, job.pid_start, job.since, job.last_beat = pid, pid_start, now, now
        actions: list[Action] = [Emit(event(job.placement, JobState.STARTED, now))]
        if job.stop is not None:  # a stop came while it was starting
            actions.append(Terminate(key, job.stop.grace_s))
        return actions

    def on_launch_failed(self, key: Key, why: str, now: float) -> list[Action]:
        job = self.jobs.pop(key, None)
        if job is None:
            return []
        self._remember(key, job.placement.attempt)
        if job.stop is not None and job.stop.reason == "lost":
            end = Emit(event(job.placement, JobState.LOST, now, reason=job.stop.reason))
        else:
            end = Emit(event(job.placement, JobState.FAILED, now, reason=f"did not start: {why}"))
        return [end, *self._start_next(key, now)]

    def on_stop(self, s: StopJob, now: float) -> list[Action]:
        if s.node != self.node:
            return []
        actions: list[Action] = []
        for key, (p, _) in list(self._waiting.items()):
            if key[0] == s.job_id and _stops(s, p.attempt):
                del self._waiting[key]
                self._remember(key, p.attempt)
                actions.append(Emit(event(p, STOPPED_AS[s.reason], now, reason=s.reason)))
        for key in [k for k, p in self._next.items() if k[0] == s.job_id and _stops(s, p.attempt)]:
            nxt = self._next.pop(key)
            self._remember(key, nxt.attempt)
            actions.append(Emit(event(nxt, STOPPED_AS[s.reason], now, reason=s.reason)))
        held = [(key, job) for key, job in self.jobs.items()
                if key[0] == s.job_id and _stops(s, job.placement.attempt)]
        earlier = self._stopped.get(s.job_id)
        if not held and not actions and s.attempt is not None and (
                earlier is None or earlier[0] < s.attempt):
            self._stopped[s.job_id] = (s.attempt, s)  # its placement may be read next
            while len(self._stopped) > 10_000:
                self._stopped.popitem(last=False)
        for key, job in held:
            if job.stop is None:
                job.stop = s
                if job.pid is not None or not self.needs_command:
                    actions.append(Terminate(key, s.grace_s))
            elif s.reason == "lost":  # already stopping; the scheduler has since given it up
                job.stop = s
        return actions

    def on_exit(self, key: Key, exit_code: int | None, now: float,
                reason: str | None = None) -> list[Action]:
        job = self.jobs.pop(key, None)
        if job is None:
            return []
        p = job.placement
        self._remember(key, p.attempt)
        if job.stop is not None:
            end = Emit(event(p, STOPPED_AS[job.stop.reason], now, exit_code=exit_code,
                             reason=job.stop.reason))
        elif exit_code == 0:
            end = Emit(event(p, JobState.SUCCEEDED, now, exit_code=0))
        else:
            end = Emit(event(p, JobState.FAILED, now, exit_code=exit_code,
                             reason=reason or _exit_reason(exit_code)))
        return [end, *self._start_next(key, now)]

    def _start_next(self, key: Key, now: float) -> list[Action]:
        """The later attempt that waited for this one to end, if any; then the placements
        that waited for GPU share, in the order they came, each if it fits now."""
        p = self._next.pop(key, None)
        actions = [] if p is None else self.on_placement(p, now)
        for k, (w, _) in list(self._waiting.items()):
            if self.refusal(w) is None:
                actions += self._admit(k, w, None, now)
        return actions

    def expire_waiting(self, now: float) -> list[Action]:
        """The placements that waited longer than ``busy_wait_s`` for their GPUs fail."""
        out: list[Action] = []
        for key, (p, until) in list(self._waiting.items()):
            if now >= until:
                del self._waiting[key]
                self._remember(key, p.attempt)
                why = self.refusal(p) or "its GPUs were busy"
                out.append(Emit(event(p, JobState.FAILED, now,
                                      reason=f"{why} (waited {self.busy_wait_s:g} s)")))
        return out

    def heartbeats(self, now: float) -> list[Action]:
        """Heartbeats of the running jobs, except those given up (they are being stopped);
        and the failures of placements that waited too long for their GPUs."""
        out: list[Action] = self.expire_waiting(now)
        for job in self.jobs.values():
            running = job.pid is not None or not self.needs_command
            given_up = job.stop is not None and job.stop.reason == "lost"
            if running and not given_up and now - job.last_beat >= self.heartbeat_s:
                job.last_beat = now
                out.append(Emit(event(job.placement, JobState.HEARTBEAT, now)))
        return out

    def recover(self, saved: Iterable[RunningJob], outcomes: Mapping[Key, Outcome],
                now: float) -> list[Action]:
        """After a restart: adopt the jobs still running, report the others."""
        actions: list[Action] = []
        for job in saved:
            p = job.placement
            key = (p.job.job_id, p.member)
            found = outcomes.get(key, Outcome())
            if found.alive and job.pid is not None:
                self.jobs[key] = RunningJob(placement=p, since=job.since, pid=job.pid,
                                            pid_start=job.pid_start, last_beat=now, adopted=True)
                actions.append(Adopt(key, job.pid))
                continue
            self._remember(key, p.attempt)
            if found.exit_code is not None:
                self.jobs[key] = job
                actions.extend(self.on_exit(key, found.exit_code, now))
            else:  # gone with the executor: lost, so the scheduler may run it again
                actions.append(Emit(event(p, JobState.LOST, now, reason=LOST_REASON)))
        return actions

    # questions --------------------------------------------------------------------------

    def refusal(self, p: Placement, count_use: bool = True) -> str | None:
        """Why this node cannot run the placement, or None; ``count_use=False`` leaves out
        the share that the jobs here hold."""
        if not p.gpus:
            return "the placement names no GPU"
        if self.needs_command and not p.job.command:
            return "the job has no command to run"
        for g in p.gpus:
            if g >= self.gpus:
                have = f"GPUs 0-{self.gpus - 1}" if self.gpus else "no GPUs"
                return f"GPU {g} is not on node {self.node} (it has {have})"
            if g in self.unhealthy:
                return f"GPU {g} is not usable: {self.unhealthy[g]}"
            used = self.milli_used(g) if count_use else 0
            if not p.lent and used + p.gpu_milli > GPU_MILLI:  # lent share is on top
                return (f"GPU {g} has {GPU_MILLI - used}/{GPU_MILLI} free, the job needs "
                        f"{p.gpu_milli}")
        if len(set(p.gpus)) != len(p.gpus):
            return "the placement names a GPU twice"
        return None

    def busy_only(self, p: Placement) -> bool:
        """Whether the placement is refused only because jobs here still hold its GPUs."""
        return self.refusal(p, count_use=False) is None

    def milli_used(self, gpu: int) -> int:
        """Share of ``gpu`` given out (lent share, allocated to others too, is not counted)."""
        return sum(j.placement.gpu_milli for j in self.jobs.values()
                   if gpu in j.placement.gpus and not j.placement.lent)

    def gpu_load(self) -> dict[int, float]:
        """GPU index -> how busy its jobs keep it (percent), for the simulated GPU source."""
        return gpu_loads(j.placement for j in self.jobs.values())

    def _remember(self, key: Key, attempt: int, keep: int = 10_000) -> None:
        self._done[(key, attempt)] = None
        while len(self._done) > keep:
            self._done.popitem(last=False)


def _stops(s: StopJob, attempt: int) -> bool:
    """Whether stop ``s`` applies to ``attempt`` of its job (never to a later one)."""
    return s.attempt is None or attempt <= s.attempt


def _exit_reason(code: int | None) -> str:
    if code is None:
        return UNKNOWN_EXIT_REASON
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"
