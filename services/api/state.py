"""The api's live picture of the fleet, built from the topics. Pure: messages in, state out.

``LiveState.apply(msg)`` takes any message of the topics the api reads; the clock is injected
so that tests control time. Changes that the event stream forwards (job and alert updates) are
kept, numbered, in ``recent``.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpufleet.contracts import (
    DUPLICATE_JOB_ID,
    GPU_MILLI,
    TERMINAL_STATES,
    Alert,
    AlertState,
    CancelJob,
    GpuDrain,
    GpuUndrain,
    JobEvent,
    JobSpec,
    JobState,
    JobSummary,
    NodeInventory,
    NodeSample,
    Placement,
    ReclaimRequest,
    ReclaimWarning,
    ReclaimWithdrawn,
    RightSizingReport,
    SchedulerState,
    StopJob,
    SubmitJob,
)
from services.api.loopstate import LoopState

UTIL_POINT_EVERY_S = 5.0
UTIL_POINTS_KEPT = 1440  # two hours at one point per 5 s
EVENTS_KEPT = 200
RECENT_KEPT = 1000
MAX_SAMPLE_GAP_S = 60.0  # a longer silence is not counted as idle time
RUNNING_STATES = frozenset({JobState.STARTED, JobState.HEARTBEAT})


@dataclass
class JobRecord:
    """What the api knows of one job."""

    job_id: str
    tenant: str = "default"
    queue: str = "default"
    gpus: int = 1
    gpu_milli: int = GPU_MILLI
    priority: int = 0
    state: JobState = JobState.SUBMITTED
    submitted: float | None = None
    updated: float = 0.0  # the last change (a heartbeat is none: it moves ``last_seen``)
    reason: str | None = None  # why the job is in its state, while it is in it
    node: str | None = None
    last_seen: float | None = None  # the latest start or heartbeat from the job's executor
    events: deque[JobEvent] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    placements: list[Placement] = field(default_factory=list)
    util: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=UTIL_POINTS_KEPT))
    spec_known: bool = False
    scheduled: bool = False  # the scheduler's snapshot lists it

    @property
    def vouched(self) -> bool:
        """Whether anything but its own events says this job exists (a submit, a placement,
        the scheduler): a job known only by its events is dropped when they stop."""
        return self.spec_known or self.scheduled

    def take_spec(self, spec: JobSpec) -> None:
        self.spec_known = True
        self.tenant, self.queue, self.priority = spec.tenant, spec.queue, spec.priority
        self.gpus, self.gpu_milli = spec.gpus * spec.gang, spec.gpu_milli


@dataclass
class LiveState:
    clock: Callable[[], float] = time.time
    idle_util_pct: float = 5.0
    max_jobs: int = 20_000
    job_lease_s: float = 60.0  # a job known only by its events, silent this long, is dropped
    scheduler: SchedulerState | None = None
    scheduler_seen: float | None = None
    inventory: dict[str, NodeInventory] = field(default_factory=dict)
    samples: dict[str, tuple[NodeSample, float]] = field(default_factory=dict)
    jobs: OrderedDict[str, JobRecord] = field(default_factory=OrderedDict)
    running_on: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # node -> job -> gpus
    alerts: dict[str, Alert] = field(default_factory=dict)
    idle_gpu_seconds: float = 0.0
    version: int = 0
    seq: int = 0
    recent: deque[tuple[int, str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_KEPT))
    submitting: set[str] = field(default_factory=set)  # ids of submits on their way to the bus
    orphans: dict[str, float] = field(default_factory=dict)  # running, not vouched: last event
    loop: LoopState = field(default_factory=LoopState)  # drains, reclaims, right-sizing
    _expired_at: float = 0.0

    def __post_init__(self) -> None:
        self.loop.max_jobs = self.max_jobs

    def knows(self, job_id: str) -> bool:
        """Whether ``job_id`` is taken: a job seen, or one being submitted right now."""
        return job_id in self.jobs or job_id in self.submitting

    def apply(self, msg: Any) -> None:
        """Take one message of any topic the api reads."""
        match msg:
            case NodeSample():
                self._sample(msg)
            case NodeInventory():
                self.inventory[msg.node] = msg
            case SchedulerState():
                self._snapshot(msg)
            case JobEvent():
                self._event(msg)
            case Placement():
                self._placement(msg)
            case SubmitJob():
                self._submit(msg)
            case CancelJob() | StopJob():
                pass  # the job's events say what became of it
            case Alert():
                self._alert(msg)
            case (ReclaimWarning() | ReclaimWithdrawn() | ReclaimRequest() | GpuDrain()
                  | GpuUndrain() | RightSizingReport()):
                note = self.loop.apply(msg)
                if note is not None:
                    self._note(*note)
        self.version += 1
        self.expire_orphans()

    def expire_orphans(self) -> None:
        """Drop running jobs known only by their own events that have gone silent for the
        lease (a lone ``started`` of a job nobody submitted or placed is not running forever).
        Checked at most once a second."""
        now = self.clock()
        if now - self._expired_at < 1.0:
            return
        self._expired_at = now
        for job_id, seen in list(self.orphans.items()):
            if now - seen > self.job_lease_s:
                del self.orphans[job_id]
                record = self.jobs.pop(job_id, None)
                if record is not None:
                    self._unbind(job_id, record.node)
                    self._note("job", job_id)
                    self.version += 1

    def job(self, job_id: str) -> JobRecord:
        record = self.jobs.get(job_id)
        if record is None:
            record = self.jobs[job_id] = JobRecord(job_id=job_id)
            while len(self.jobs) > self.max_jobs:
                old_id, old = self.jobs.popitem(last=False)
                self._unbind(old_id, old.node)
                self.orphans.pop(old_id, None)
        return record

    def allocated(self, node: str) -> set[int]:
        """GPU indices of a node that hold some job, by the snapshot or by placements."""
        used = {i for gpus in self.running_on.get(node, {}).values() for i in gpus}
        if self.scheduler is not None:
            for ns in self.scheduler.nodes:
                if ns.node == node:
                    used |= {i for i, free in enumerate(ns.free_milli) if free < GPU_MILLI}
        return used

    def _note(self, kind: str, payload: Any) -> None:
        self.seq += 1
        self.recent.append((self.seq, kind, payload))

    def _submit(self, msg: SubmitJob) -> None:
        record = self.job(msg.job.job_id)
        if not record.spec_known:  # the first submit holds the id; a later one is refused
            record.take_spec(msg.job)
        self._watch(record)
        record.submitted = record.submitted or msg.ts
        record.updated = max(record.updated, msg.ts)
        self._note("job", record.job_id)

    def _event(self, ev: JobEvent) -> None:
        if (ev.state is JobState.REJECTED and (ev.reason or "").startswith(DUPLICATE_JOB_ID)
                and ev.job_id in self.jobs):
            return  # a second submit was refused; the job that holds the id is unchanged
        record = self.job(ev.job_id)
        if ev.tenant:
            record.tenant = ev.tenant
        if ev.state in RUNNING_STATES:
            record.last_seen = max(record.last_seen or ev.ts, ev.ts)
        if ev.state is JobState.HEARTBEAT:  # folded into last_seen, not listed
            if record.state not in TERMINAL_STATES and record.state is not JobState.STARTED:
                self._move(record, JobState.STARTED, None)  # a heartbeat says it runs
                record.updated = max(record.updated, ev.ts)
        else:
            record.events.append(ev)
            self._move(record, ev.state, ev.reason)
            record.updated = max(record.updated, ev.ts)
        if ev.state is JobState.SUBMITTED or ev.state is JobState.QUEUED:
            record.submitted = record.submitted or ev.ts
        if ev.node and ev.gpus is not None and ev.state not in TERMINAL_STATES:
            if not record.spec_known:  # a job placed by another system: count what it holds
                record.gpus = max(record.gpus, len(ev.gpus))
            record.node = ev.node
            self.running_on.setdefault(ev.node, {})[ev.job_id] = list(ev.gpus)
        if ev.state in TERMINAL_STATES:
            self._unbind(ev.job_id, record.node)
        self._watch(record)
        self._note("job", record.job_id)

    @staticmethod
    def _move(record: JobRecord, state: JobState, reason: str | None) -> None:
        """The job is in ``state`` now; a reason said for an earlier state no longer applies."""
        if state is not record.state:
            record.reason = None
        record.state = state
        record.reason = reason or record.reason

    def _watch(self, record: JobRecord) -> None:
        if record.state in RUNNING_STATES and not record.vouched:
            self.orphans[record.job_id] = max(record.updated, record.last_seen or 0.0)
        else:
            self.orphans.pop(record.job_id, None)

    def _placement(self, p: Placement) -> None:
        record = self.job(p.job.job_id)
        record.take_spec(p.job)
        self._watch(record)
        record.placements.append(p)
        record.node = p.node
        record.updated = max(record.updated, p.ts)
        if record.state not in TERMINAL_STATES:
            self.running_on.setdefault(p.node, {})[record.job_id] = list(p.gpus)
        self._note("job", record.job_id)

    def _unbind(self, job_id: str, node: str | None) -> None:
        for n in [node] if node else list(self.running_on):
            self.running_on.get(n, {}).pop(job_id, None)

    def _snapshot(self, snap: SchedulerState) -> None:
        self.scheduler, self.scheduler_seen = snap, self.clock()
        for summary in (*snap.queued, *snap.running):
            self._take_summary(summary, snap.ts)

    def _take_summary(self, s: JobSummary, ts: float) -> None:
        record = self.job(s.job_id)
        record.scheduled = True
        self._watch(record)
        record.updated = record.updated or ts
        if record.state in TERMINAL_STATES and s.state not in TERMINAL_STATES:
            return  # the snapshot is older than the job's end
        record.tenant, record.queue, record.priority = s.tenant, s.queue, s.priority
        record.gpus, record.gpu_milli = s.gpus, s.gpu_milli
        if not (s.state is JobState.PLACED and record.state in RUNNING_STATES):
            # the scheduler says "placed" of jobs that have started
            self._move(record, s.state, s.reason)
        if s.since is not None and s.state is JobState.QUEUED:
            record.submitted = record.submitted or s.since
        if s.node is not None:
            record.node = s.node
            if s.gpu_indices is not None:
                self.running_on.setdefault(s.node, {})[s.job_id] = list(s.gpu_indices)

    def _sample(self, sample: NodeSample) -> None:
        now = self.clock()
        previous = self.samples.get(sample.node)
        self.samples[sample.node] = (sample, now)
        util = {g.index: g.util_gpu for g in sample.gpus if g.util_gpu is not None}
        if previous is not None:
            gap = sample.ts - previous[0].ts
            if 0 < gap <= MAX_SAMPLE_GAP_S:
                idle = [i for i in self.allocated(sample.node)
                        if i in util and util[i] < self.idle_util_pct]
                self.idle_gpu_seconds += gap * len(idle)
        for job_id, gpus in self.running_on.get(sample.node, {}).items():
            values = [util[i] for i in gpus if i in util]
            record = self.jobs.get(job_id)
            if not values or record is None:
                continue
            if not record.util or sample.ts - record.util[-1][0] >= UTIL_POINT_EVERY_S:
                record.util.append((sample.ts, sum(values) / len(values)))

    def _alert(self, alert: Alert) -> None:
        if alert.state is AlertState.FIRING:
            self.alerts[alert.alert_id] = alert
        else:
            self.alerts.pop(alert.alert_id, None)
        self._note("alert", alert.alert_id)

    def open_alerts(self) -> list[Alert]:
        return sorted(self.alerts.values(), key=lambda a: a.ts, reverse=True)

    def changes_since(self, seq: int) -> list[tuple[int, str, Any]]:
        return [item for item in self.recent if item[0] > seq]
