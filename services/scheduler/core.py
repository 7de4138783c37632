"""The scheduler core: pure. Messages in, decisions and events out, time from an injected clock.

``handle(msg)`` takes one input (a request, a job event, a node inventory, a utilization
window) and returns what must be published at once (rejections, cancellations). ``cycle()``
runs one scheduling cycle over the queue and returns placements, stops and job events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from gpufleet.contracts import (
    DUPLICATE_JOB_ID,
    CancelJob,
    GpuDrain,
    GpuHealth,
    GpuUndrain,
    GpuUtilWindow,
    JobEvent,
    JobSpec,
    JobState,
    Message,
    NodeInventory,
    Placement,
    ReclaimRequest,
    ReclaimWarning,
    ReclaimWithdrawn,
    StopJob,
    SubmitJob,
)
from services.scheduler.cluster import Cluster, NodeSpec, Slot
from services.scheduler.framework import Census, Code, CycleState, Running
from services.scheduler.jobs import FULL, Job, from_spec, problems
from services.scheduler.loop import ClosedLoop, act, lend
from services.scheduler.pipeline import Profile

SOURCE = "scheduler"
FREEING = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PREEMPTED}
ALIVE = {JobState.STARTED, JobState.HEARTBEAT}  # an executor's word that an attempt runs
Clock = Callable[[], float]
WAITING = "waiting for the next scheduling cycle"  # a queued job's reason until a cycle saw it


@dataclass(frozen=True)
class Leases:
    """When a node counts as gone, and what becomes of its jobs (0 turns a limit off).

    A node that has not been heard from (inventory, samples, its executor's job events) for
    ``node_lease_s`` is offline: its jobs are lost and their GPUs freed. A placement whose
    members have not all reported ``started`` within ``start_timeout_s`` is lost too, and the
    nodes that did not start it take no placement for one lease. A lost job goes back to its
    queue (attempt + 1) while it has been lost fewer than ``max_attempts`` times.
    """

    node_lease_s: float = 0.0
    start_timeout_s: float = 0.0
    max_attempts: int = 3
    check_every_s: float = 1.0


@dataclass
class Record:
    """What the scheduler remembers of every job it has seen (for duplicates and the API)."""

    job: Job
    state: JobState
    reason: str = ""
    attempt: int = 0
    since: float = 0.0
    losses: int = 0  # times it was lost (node lease, start timeout)
    cancelling: bool = False  # a cancel's StopJob is out; its end is a cancel, never a retry


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
                 seed: int = 0, timer: Clock | None = None, leases: Leases | None = None) -> None:
        self.profile = profile
        self.clock = clock
        self.timer = timer  # for decision latency; None: not measured
        self.cluster = cluster or Cluster()
        self.pending: dict[str, Job] = {}
        self.running: dict[str, Running] = {}
        self.census = Census()  # of ``running``: kept with it
        self.records: dict[str, Record] = {}
        self.nominations: dict[str, list[str]] = {}
        self.rng = np.random.default_rng(seed)
        self.seq = 0
        self.dirty = True  # something changed since the last cycle
        self.last = CycleStats()
        self.leases = leases or Leases()
        self.specs: dict[str, NodeSpec] = {}  # each node's latest inventory
        self.seen: dict[str, float] = {}  # when each node was last heard from
        self.expired: set[str] = set()  # silent for longer than the lease: offline
        self.cordoned: dict[str, float] = {}  # did not start a placement: none until then
        self.started: dict[str, set[int]] = {}  # members that reported the attempt running
        self.ended: dict[str, set[int]] = {}  # gang members that ended, their GPUs freed
        self.touched: set[str] = set()  # jobs whose record changed since take_touched()
        self.next_check = 0.0
        self.loop = ClosedLoop.of(profile.plugins)  # drains, reclaims, measured load

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
                self.loop.observe(msg, self.clock())
                self._inventory(node_spec(msg))
            case GpuUtilWindow():
                return act(self, msg)
            case (GpuDrain() | GpuUndrain() | ReclaimRequest() | ReclaimWarning()
                  | ReclaimWithdrawn()):
                return act(self, msg)
        return []

    def _move(self, job: Job, state: JobState, reason: str | None = None) -> None:
        """The job's record takes ``state`` now, with the reason it is in it."""
        self.touched.add(job.job_id)
        rec = self.records.get(job.job_id)
        if rec is not None:
            rec.state, rec.since = state, self.clock()
            rec.reason = reason or ""

    def _job_event(self, job: Job, state: JobState, reason: str | None = None,
                   **extra: object) -> JobEvent:
        """The event that tells the other services ``job`` is in ``state`` now."""
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
            self._move(job, JobState.REJECTED, reason)
            return [self._job_event(job, JobState.REJECTED, reason)]
        self.pending[job.job_id] = job
        self.dirty = True
        self._move(job, JobState.QUEUED, WAITING)
        return [self._job_event(job, JobState.QUEUED, WAITING)]

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
            self._move(job, JobState.CANCELLED, msg.reason)
            return [self._job_event(job, JobState.CANCELLED, msg.reason, attempt=attempt)]
        run = self.running.get(msg.job_id)
        if run is None or run.stopping:
            return []
        run.stopping = True
        self.records[msg.job_id].cancelling = True
        self.touched.add(msg.job_id)
        return self._stops(run, "cancelled")

    def _stops(self, run: Running, why: str,
               members: Iterable[int] | None = None) -> list[Message]:
        """A stop of this attempt for every node of its ``members`` (default: all)."""
        slots = run.slots if members is None else [run.slots[i] for i in members]
        nodes = sorted({self.cluster.names[s.node] for s in slots})
        return [StopJob(job_id=run.job.job_id, node=n, reason=why,  # type: ignore[arg-type]
                        attempt=run.attempt, ts=self.clock()) for n in nodes]

    def _on_event(self, ev: JobEvent) -> list[Message]:
        if ev.source == SOURCE:
            return []
        if ev.node is not None:
            self.heartbeat(ev.node)
        run = self.running.get(ev.job_id)
        if run is None or ev.attempt != run.attempt:
            return []
        if ev.state in ALIVE:
            members = self.started.setdefault(ev.job_id, set())
            now_running = set(range(len(run.slots))) if ev.member is None else {ev.member}
            if not now_running <= members:  # an event without a member speaks for all
                members |= now_running
                self.touched.add(ev.job_id)
            return []
        if ev.state == JobState.LOST:  # its executor lost it (restarted without it)
            node = ev.node or self.cluster.names[run.slots[0].node]
            return self._lose(run, f"node {node}: {ev.reason or 'the job was lost'}", node)
        if ev.state not in FREEING:
            return []
        if ev.member is not None and len(run.slots) > 1:
            out = self._member_ended(run, ev)
            if out is not None:
                return out
        self.free(ev.job_id)
        rec = self.records.get(ev.job_id)
        if ev.state == JobState.PREEMPTED:
            self.pending[ev.job_id] = run.job
            if rec is not None:
                rec.attempt += 1
            why = rec.reason if rec is not None and rec.state == JobState.PREEMPTING else ""
            why = f"{why or 'preempted'}; back in its queue"
            self._move(run.job, JobState.QUEUED, why)
            return [self._job_event(run.job, JobState.QUEUED, why,
                                    attempt=rec.attempt if rec is not None else run.attempt + 1)]
        if rec is not None:
            rec.state, rec.since, rec.cancelling = ev.state, ev.ts, False
        return []

    def _member_ended(self, run: Running, ev: JobEvent) -> list[Message] | None:
        """One member of a gang ended: free its GPUs alone, since the others may still run on
        theirs. A member that did not succeed ends the attempt: the others are stopped, and
        their GPUs are freed as each reports its end. ``None`` once every member has ended
        (the job as a whole ends then)."""
        assert ev.member is not None
        ended = self.ended.setdefault(run.job.job_id, set())
        if ev.member in ended or ev.member >= len(run.slots):
            return []
        ended.add(ev.member)
        self.cluster.release(run.slots[ev.member])
        if len(ended) == len(run.slots):
            return None
        self.touched.add(run.job.job_id)
        self.dirty = True
        if ev.state == JobState.SUCCEEDED or run.stopping:
            return []
        run.stopping = True
        live = [i for i in range(len(run.slots)) if i not in ended]
        return self._stops(run, "preempted" if ev.state == JobState.PREEMPTED else "cancelled",
                           live)

    def free(self, job_id: str) -> None:
        run = self.running.pop(job_id)
        self.census.remove(run)
        self.started.pop(job_id, None)
        ended = self.ended.pop(job_id, set())
        self.touched.add(job_id)
        for i, slot in enumerate(run.slots):
            if i not in ended:  # an ended gang member's GPUs were freed when it ended
                self.cluster.release(slot)
        self.dirty = True

    def hold(self, job: Job, slots: list[Slot], attempt: int, borrowed: bool = False,
             since: float | None = None) -> None:
        """Record a job as running on ``slots`` (allocating them); used by recovery too."""
        for slot in slots:
            self.cluster.allocate(slot)
        at = self.clock() if since is None else since
        self._run(Running(job, slots, at, attempt, borrowed))
        self.touched.add(job.job_id)

    def _run(self, run: Running) -> None:
        self.running[run.job.job_id] = run
        self.census.add(run)

    def take_touched(self) -> list[str]:
        """The jobs whose record changed since the last call (for the state topic)."""
        out = sorted(self.touched)
        self.touched.clear()
        return out

    # -- leases ------------------------------------------------------------------------------

    def _inventory(self, spec: NodeSpec) -> None:
        changed = self.specs.get(spec.name) != spec
        self.specs[spec.name] = spec
        self.heartbeat(spec.name)
        if changed:
            self._apply(spec.name)

    def _apply(self, node: str) -> None:
        """Put a node's inventory into the model, offline while its lease ran out or while
        it is cordoned."""
        spec = self.specs[node]
        away = node in self.expired or node in self.cordoned
        self.cluster.upsert(self.loop.apply(replace(spec, online=spec.online and not away)))
        self.dirty = True

    def heartbeat(self, node: str) -> None:
        """``node`` was heard from now: its lease starts again (and it is back if it was gone).
        Only nodes with an inventory have a lease."""
        if node not in self.specs:
            return
        self.seen[node] = self.clock()
        if node in self.expired:
            self.expired.discard(node)
            if node in self.specs:
                self._apply(node)

    def lease_due(self) -> bool:
        """Whether ``expire`` has anything to look at now."""
        on = self.leases.node_lease_s > 0 or self.leases.start_timeout_s > 0
        return on and self.clock() >= self.next_check

    def expire(self) -> list[Message]:
        """Nodes silent for longer than the lease go offline and their jobs are lost; jobs not
        started in time are lost; cordons that ran out end. At most once per ``check_every_s``."""
        if not self.lease_due():
            return []
        now = self.clock()
        lease = self.leases
        self.next_check = now + lease.check_every_s
        for node in [n for n, until in self.cordoned.items() if until <= now]:
            del self.cordoned[node]
            if node in self.specs:
                self._apply(node)
        gone: set[str] = set()
        if lease.node_lease_s > 0:
            gone = {n for n, t in self.seen.items()
                    if n not in self.expired and n in self.specs and now - t > lease.node_lease_s}
            for node in sorted(gone):
                self.expired.add(node)
                self._apply(node)
        out: list[Message] = []
        if not gone and lease.start_timeout_s <= 0:
            return out
        for job_id, run in list(self.running.items()):
            if not gone and (run.stopping or now - run.started_at <= lease.start_timeout_s
                             or len(self.started.get(job_id, ())) >= len(run.slots)):
                continue  # the common case, decided without looking at its nodes
            names = [self.cluster.names[s.node] for s in run.slots]
            dead = sorted({n for n in names if n in gone})
            if dead:
                out += self._lose(run, f"node {', '.join(dead)} silent for more than "
                                       f"{lease.node_lease_s:g} s (its lease ran out)", dead[0])
                continue
            members = self.started.get(job_id, set())
            late = lease.start_timeout_s > 0 and not run.stopping and (
                now - run.started_at > lease.start_timeout_s) and len(members) < len(names)
            if late:
                slow = sorted({n for i, n in enumerate(names) if i not in members})
                for node in slow:
                    self.cordoned[node] = now + max(lease.node_lease_s, lease.start_timeout_s)
                    self._apply(node)
                out += self._lose(run, f"not started within {lease.start_timeout_s:g} s on "
                                       f"node {', '.join(slow)}", slow[0])
        return out

    def _lose(self, run: Running, why: str, node: str) -> list[Message]:
        """Give up one attempt of a job: stop it wherever it may still run, free its GPUs,
        report it lost and queue it again if it may be retried."""
        job = run.job
        rec = self.records[job.job_id]
        out = self._stops(run, "lost")
        self.free(job.job_id)
        self.nominations.pop(job.job_id, None)
        rec.losses += 1
        retry = not rec.cancelling and rec.losses < self.leases.max_attempts
        final = "" if retry or rec.cancelling else (
            f"; given up after {rec.losses} lost attempt(s) (max_attempts "
            f"{self.leases.max_attempts})")
        self._move(job, JobState.LOST, why + final)
        out.append(self._job_event(job, JobState.LOST, why + final, node=node,
                                   attempt=run.attempt))
        if rec.cancelling:
            rec.cancelling = False
            self._move(job, JobState.CANCELLED, f"cancelled; {why}")
            out.append(self._job_event(job, JobState.CANCELLED, f"cancelled; {why}",
                                       attempt=run.attempt))
        elif retry:
            rec.attempt = run.attempt + 1
            self.pending[job.job_id] = job
            self.dirty = True
            again = f"{why}; back in its queue as attempt {rec.attempt}"
            self._move(job, JobState.QUEUED, again)
            out.append(self._job_event(job, JobState.QUEUED, again, attempt=rec.attempt))
        return out

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
                           tenant_used=dict(self.census.held), nominations=self.nominations,
                           memo=self.loop.memo(), census=self.census)
        out: list[Message] = []
        stats = CycleStats()
        failed: dict[object, str] = {}
        timer, records = self.timer, self.records
        for job in self.profile.order(state, state.pending, self.cluster):
            # A job that ends before the reservation starts may backfill where one alike failed.
            key = (job.alike if state.reservation is None
                   or not self._ends_before_reservation(state, job) else (job.alike, True))
            reason = failed.get(key)
            if reason is None:
                started = timer() if timer else 0.0
                reason, cacheable = self._try(state, job, out)
                if timer:
                    stats.latencies.append(timer() - started)
                if reason is not None and cacheable:
                    failed[key] = reason
                elif reason is None:
                    stats.placed += 1
            if reason is not None and (rec := records[job.job_id]).reason != reason:
                self._move(job, JobState.QUEUED, reason)
                out.append(self._job_event(job, JobState.QUEUED, reason, attempt=rec.attempt))
        stats.decisions = len(state.pending)
        out += lend(self, state)  # opportunistic jobs still waiting, on lent share
        self.last = stats
        return out

    @staticmethod
    def _ends_before_reservation(state: CycleState, job: Job) -> bool:
        r = state.reservation
        return (r is not None and job.est_runtime_s is not None
                and state.now + job.est_runtime_s <= r.start)

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
            why = f"preempted by {job.job_id} (priority {job.priority})"
            self._move(run.job, JobState.PREEMPTING, why)
            out.append(self._job_event(run.job, JobState.PREEMPTING, why, attempt=run.attempt))
        if len(state.victims) > seen:
            self.nominations[job.job_id] = state.victims[seen:]
        reason = "; ".join(r for r in (attempt.status.reason, post.reason) if r)
        return reason or "no node fits", post.code != Code.WAIT

    def _commit(self, state: CycleState, job: Job, slots: list[Slot], out: list[Message]) -> None:
        rec = self.records[job.job_id]
        self._run(Running(job, slots, state.now, rec.attempt, state.borrowing))
        del self.pending[job.job_id]
        self.nominations.pop(job.job_id, None)
        state.tenant_used[job.tenant] = state.tenant_used.get(job.tenant, 0) + job.demand_milli
        spec = job.spec
        assert spec is not None
        for member, slot in enumerate(slots):
            node = self.cluster.names[slot.node]
            out.append(Placement(job=spec, node=node, gpus=list(slot.gpus), gpu_milli=slot.milli,
                                 member=member, attempt=rec.attempt, ts=state.now))
            self._move(job, JobState.PLACED)
            out.append(self._job_event(job, JobState.PLACED, None, node=node,
                                       gpus=list(slot.gpus), gpu_milli=slot.milli, member=member,
                                       attempt=rec.attempt))
