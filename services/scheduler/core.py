"""The scheduler core: pure. Messages in, decisions and events out, time from an injected clock.

``handle(msg)`` takes one input (a request, a job event, a node inventory, a utilization
window) and returns what must be published at once (rejections, cancellations). ``cycle()``
runs one scheduling cycle over the queue and returns placements, stops and job events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gpufleet.contracts import (
    DUPLICATE_JOB_ID,
    CancelJob,
    GpuHealth,
    GpuUtilWindow,
    JobEvent,
    JobSpec,
    JobState,
    Message,
    NodeInventory,
    Placement,
    StopJob,
    SubmitJob,
)
from services.scheduler.cluster import Cluster, NodeSpec, Slot
from services.scheduler.framework import Code, CycleState, Running
from services.scheduler.jobs import FULL, Job, from_spec, problems
from services.scheduler.pipeline import Profile

SOURCE = "scheduler"
FREEING = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PREEMPTED}
Clock = Callable[[], float]


@dataclass
class Record:
    """What the scheduler remembers of every job it has seen (for duplicates and the API)."""

    job: Job
    state: JobState
    reason: str = ""
    attempt: int = 0
    since: float = 0.0


@dataclass
class CycleStats:
    decisions: int = 0
    placed: int = 0
    latencies: list[float] = field(default_factory=list)


UNREPORTED = 1 << 40  # a node that reports no CPU or memory is not limited by them


def node_spec(inv: NodeInventory) -> NodeSpec:
    gpus = sorted(inv.gpus, key=lambda g: g.index)
    count = max((g.index for g in gpus), default=-1) + 1
    healthy = [False] * count
    domains = [0] * count
    for g in gpus:
        healthy[g.index] = g.health == GpuHealth.OK
        domains[g.index] = g.nvlink_domain or 0
    model = gpus[0].model if gpus else "none"
    return NodeSpec(inv.node, model, count, inv.cpu_milli or UNREPORTED,
                    inv.memory_mib or UNREPORTED, tuple(healthy), tuple(domains), inv.online)


class SchedulerCore:
    def __init__(self, profile: Profile, clock: Clock, cluster: Cluster | None = None,
                 seed: int = 0, timer: Clock | None = None) -> None:
        self.profile = profile
        self.clock = clock
        self.timer = timer  # for decision latency; None: not measured
        self.cluster = cluster or Cluster()
        self.pending: dict[str, Job] = {}
        self.running: dict[str, Running] = {}
        self.records: dict[str, Record] = {}
        self.nominations: dict[str, list[str]] = {}
        self.util: dict[tuple[str, int], float] = {}
        self.rng = np.random.default_rng(seed)
        self.seq = 0
        self.dirty = True  # something changed since the last cycle
        self.last = CycleStats()

    # -- inputs ------------------------------------------------------------------------------

    def handle(self, msg: object) -> list[Message]:
        match msg:
            case SubmitJob():
                return self._submit(msg)
            case CancelJob():
                return self._cancel(msg)
            case JobEvent():
                return self._on_event(msg)
            case NodeInventory():
                self.cluster.upsert(node_spec(msg))
                self.dirty = True
            case GpuUtilWindow():
                self.util[(msg.node, msg.gpu)] = msg.util_mean
        return []

    def _event(self, job: Job, state: JobState, reason: str | None = None,
               **extra: object) -> JobEvent:
        rec = self.records.get(job.job_id)
        if rec is not None:
            rec.state, rec.since = state, self.clock()
            rec.reason = reason or ""
        return JobEvent(job_id=job.job_id, state=state, tenant=job.tenant, reason=reason,
                        source=SOURCE, ts=self.clock(), **extra)  # type: ignore[arg-type]

    def _submit(self, msg: SubmitJob) -> list[Message]:
        spec = msg.job
        job = from_spec(spec, self.clock(), self.seq)
        self.seq += 1
        if spec.job_id in self.records:
            return [JobEvent(job_id=spec.job_id, state=JobState.REJECTED, tenant=spec.tenant,
                             source=SOURCE, ts=self.clock(),
                             reason=f"{DUPLICATE_JOB_ID} {spec.job_id!r}: a job with this id was "
                                    "already submitted; choose a new id")]
        self.records[job.job_id] = Record(job, JobState.SUBMITTED, since=self.clock())
        reason = self._never_fits(spec)
        if reason is not None:
            return [self._event(job, JobState.REJECTED, reason)]
        self.pending[job.job_id] = job
        self.dirty = True
        return [self._event(job, JobState.QUEUED, "waiting for the next scheduling cycle")]

    def _never_fits(self, spec: JobSpec) -> str | None:
        c = self.cluster
        if c.n_nodes == 0:
            return problems(spec, set(), 1 << 30, 1 << 30)
        milli = spec.gpu_milli if 0 < spec.gpu_milli < FULL else FULL
        largest = c.largest_gang(spec.gpus, milli) if spec.gpus > 0 else 0
        v = c.view()
        biggest = int((c.exists[v] & c.healthy[v]).sum(axis=1).max(initial=0))
        return problems(spec, set(c.models), largest, biggest)

    def _cancel(self, msg: CancelJob) -> list[Message]:
        job = self.pending.pop(msg.job_id, None)
        if job is not None:
            attempt = self.records[msg.job_id].attempt
            return [self._event(job, JobState.CANCELLED, msg.reason, attempt=attempt)]
        run = self.running.get(msg.job_id)
        if run is None or run.stopping:
            return []
        run.stopping = True
        return self._stops(run, "cancelled")

    def _stops(self, run: Running, why: str) -> list[Message]:
        nodes = sorted({self.cluster.names[s.node] for s in run.slots})
        return [StopJob(job_id=run.job.job_id, node=n, reason=why,  # type: ignore[arg-type]
                        ts=self.clock()) for n in nodes]

    def _on_event(self, ev: JobEvent) -> list[Message]:
        if ev.source == SOURCE or ev.state not in FREEING:
            return []
        run = self.running.get(ev.job_id)
        if run is None or ev.attempt != run.attempt:
            return []
        self.free(ev.job_id)
        rec = self.records.get(ev.job_id)
        if ev.state == JobState.PREEMPTED:
            self.pending[ev.job_id] = run.job
            if rec is not None:
                rec.attempt += 1
            return [self._event(run.job, JobState.QUEUED, "preempted; back in its queue")]
        if rec is not None:
            rec.state, rec.since = ev.state, ev.ts
        return []

    def free(self, job_id: str) -> None:
        run = self.running.pop(job_id)
        for slot in run.slots:
            self.cluster.release(slot)
        self.dirty = True

    def hold(self, job: Job, slots: list[Slot], attempt: int, borrowed: bool = False) -> None:
        """Record a job as running on ``slots`` (allocating them); used by recovery too."""
        for slot in slots:
            self.cluster.allocate(slot)
        self.running[job.job_id] = Running(job, slots, self.clock(), attempt, borrowed)

    # -- the cycle ---------------------------------------------------------------------------

    def cycle(self) -> list[Message]:
        """One scheduling cycle.

        1. Take a fresh cycle state: the queue, who runs, who holds how much.
        2. Order the queue (the queue-order plugins).
        3. For each job: place it, or learn why not and let the post-filters act (preempt,
           reserve). A shape that failed plainly is not tried again in this cycle.
        4. Report every job whose reason to wait changed.
        """
        self.dirty = False
        state = CycleState(now=self.clock(), rng=self.rng, running=self.running,
                           pending=list(self.pending.values()),
                           capacity_milli=self.cluster.capacity_milli(),
                           tenant_used=self._tenant_used(), nominations=self.nominations)
        out: list[Message] = []
        stats = CycleStats()
        failed: dict[object, str] = {}
        for job in self.profile.order(state, state.pending, self.cluster):
            key = (job.shape, job.priority, job.tenant, self._ends_before_reservation(state, job))
            reason = failed.get(key)
            if reason is None:
                started = self.timer() if self.timer else 0.0
                reason, cacheable = self._try(state, job, out)
                if self.timer:
                    stats.latencies.append(self.timer() - started)
                if reason is not None and cacheable:
                    failed[key] = reason
            stats.decisions += 1
            if reason is None:
                stats.placed += 1
            elif self.records[job.job_id].reason != reason:
                out.append(self._event(job, JobState.QUEUED, reason))
        self.last = stats
        return out

    @staticmethod
    def _ends_before_reservation(state: CycleState, job: Job) -> bool:
        r = state.reservation
        return (r is not None and job.est_runtime_s is not None
                and state.now + job.est_runtime_s <= r.start)

    def _tenant_used(self) -> dict[str, int]:
        used: dict[str, int] = {}
        for run in self.running.values():
            used[run.job.tenant] = used.get(run.job.tenant, 0) + run.job.demand_milli
        return used

    def _try(self, state: CycleState, job: Job, out: list[Message]) -> tuple[str | None, bool]:
        """Place one job; else (the reason it waits, whether its shape may be skipped)."""
        attempt = self.profile.place(state, job, self.cluster)
        if attempt.status.ok:
            self._commit(state, job, attempt.slots, out)
            return None, False
        seen = len(state.victims)
        post = self.profile.explain(state, job, self.cluster)
        for victim in state.victims[seen:]:
            run = self.running[victim]
            run.stopping = True
            out.extend(self._stops(run, "preempted"))
            out.append(self._event(run.job, JobState.PREEMPTING,
                                   f"preempted by {job.job_id} (priority {job.priority})",
                                   attempt=run.attempt))
        if len(state.victims) > seen:
            self.nominations[job.job_id] = state.victims[seen:]
        reason = "; ".join(r for r in (attempt.status.reason, post.reason) if r)
        return reason or "no node fits", post.code != Code.WAIT

    def _commit(self, state: CycleState, job: Job, slots: list[Slot], out: list[Message]) -> None:
        rec = self.records[job.job_id]
        self.running[job.job_id] = Running(job, slots, state.now, rec.attempt, state.borrowing)
        del self.pending[job.job_id]
        self.nominations.pop(job.job_id, None)
        state.tenant_used[job.tenant] = state.tenant_used.get(job.tenant, 0) + job.demand_milli
        spec = job.spec
        assert spec is not None
        for member, slot in enumerate(slots):
            node = self.cluster.names[slot.node]
            out.append(Placement(job=spec, node=node, gpus=list(slot.gpus), gpu_milli=slot.milli,
                                 member=member, attempt=rec.attempt, ts=state.now))
            out.append(self._event(job, JobState.PLACED, None, node=node, gpus=list(slot.gpus),
                                   gpu_milli=slot.milli, member=member, attempt=rec.attempt))
