"""The closed loop in the scheduler: what the measurements and the analytics' decisions change.

The core feeds every input of the loop here: utilization windows (``gpu.util``), node
inventories (for memory totals), drains (``gpu.drains``) and reclaim messages (``reclaims``).
``ClosedLoop`` keeps what they say (``MeasuredLoad``, ``Drains``) and asks the loop plugins of
the profile what to do about each message. A loop plugin is any plugin of the profile with a
``react(msg, view)`` method; it answers with values:

* ``LoopStop``: stop a running job with a reason, requeued or not (the core sends it through
  the preemption path: a ``StopJob``, then the job's end is reported by its executor);
* ``Ignored``: nothing to do, and why (logged at info level);
* ``Note``: a new reason for a running job (a reclaim warning, a withdrawal), shown in its
  record.

A ``Lender`` (``opportunistic``) places, after each cycle, the jobs it wants that are still
waiting on share lent by GPUs measured idle (``lend``).

With a plugin off, its messages change nothing: without ``drained`` a drain neither marks its
GPU nor stops its jobs; without ``reclaim`` a reclaim request is ignored. ``act`` and ``lend``
are the core's own steps, kept here so that the core only calls them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from gpufleet.contracts import (
    GpuDrain,
    GpuUndrain,
    GpuUtilWindow,
    JobState,
    Message,
    NodeInventory,
    Placement,
)

from .cluster import Cluster, NodeSpec, Slot
from .framework import CycleState, Running
from .jobs import Job
from .loopstops import Ignored, LoopStop
from .measured import DRAINS, MEASURED, Drains, MeasuredLoad

if TYPE_CHECKING:
    from .core import SchedulerCore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Note:
    """A running job's reason changes (it is warned, or the warning is withdrawn)."""

    job_id: str
    reason: str


Decision = LoopStop | Ignored | Note


@dataclass(frozen=True)
class LoopView:
    """What a loop plugin may look at: the running jobs, the node names by index, the
    measured load and the drains, and the time."""

    running: Mapping[str, Running]
    names: Sequence[str]
    measured: MeasuredLoad
    drains: Drains
    now: float


@runtime_checkable
class LoopPlugin(Protocol):
    name: str

    def react(self, msg: object, view: LoopView) -> list[Decision]: ...


@runtime_checkable
class DrainFilter(Protocol):
    """A plugin that keeps drained GPUs out of placement: with one, drains mark their GPUs."""

    name: str

    def filters_drained(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Offer:
    """A GPU that may lend its share now: node index, GPU, and its measured p95."""

    node: int
    gpu: int
    util_p95: float


@runtime_checkable
class Lender(Protocol):
    """A loop plugin that places jobs on lent share (opportunistic jobs): once per cycle the
    GPUs that may lend now (``offers``, best first), then for each waiting job it ``wants`` the
    slot it takes from them (``take`` removes it) and why."""

    name: str

    def wants(self, job: Job) -> bool: ...

    def may_lend(self, w: GpuUtilWindow) -> bool: ...

    def offers(self, cluster: Cluster, view: LoopView) -> list[Offer]: ...

    def take(self, job: Job, cluster: Cluster, offers: list[Offer]) -> tuple[Slot, str] | None:
        ...


@dataclass
class ClosedLoop:
    """The loop plugins of a profile and the state they read."""

    plugins: list[LoopPlugin] = field(default_factory=list)
    lenders: list[Lender] = field(default_factory=list)
    measured: MeasuredLoad = field(default_factory=MeasuredLoad)
    drains: Drains = field(default_factory=Drains)
    draining: bool = False  # the drained plugin is in the profile: drains mark their GPUs

    @classmethod
    def of(cls, plugins: Sequence[object]) -> ClosedLoop:
        loop = [p for p in plugins if isinstance(p, LoopPlugin)]
        return cls(plugins=loop, lenders=[p for p in plugins if isinstance(p, Lender)],
                   draining=any(isinstance(p, DrainFilter) for p in plugins))

    def observe(self, msg: object, now: float) -> str | None:
        """Keep what ``msg`` says (``now``: the scheduler's clock); the node whose drained GPUs
        changed, if any."""
        match msg:
            case GpuUtilWindow():
                self.measured.observe(msg, now)
            case NodeInventory():
                self.measured.observe_inventory(msg)
            case GpuDrain() | GpuUndrain() if self.draining:
                before = self.drains.gpus.get((msg.node, msg.gpu))
                self.drains.observe(msg)
                if self.drains.gpus.get((msg.node, msg.gpu)) != before:
                    return msg.node
        return None

    def react(self, msg: object, view: LoopView) -> list[Decision]:
        out: list[Decision] = []
        for plugin in self.plugins:
            out += plugin.react(msg, view)
        return out

    def apply(self, spec: NodeSpec) -> NodeSpec:
        """The node as placement sees it: drained GPUs unhealthy (when draining is on)."""
        return self.drains.apply(spec) if self.draining else spec

    def memo(self) -> dict[str, Any]:
        """What a cycle's plugins read (``CycleState.memo``)."""
        return {MEASURED: self.measured, DRAINS: self.drains}


def act(core: SchedulerCore, msg: object) -> list[Message]:
    """Feed one loop input to ``core``'s loop and perform what its plugins decide: a changed
    drain puts its node into the model again; a stop goes out as the preemption path's
    ``StopJob`` (reason ``preempted``, the job requeued when it ends) or, for a job that is
    not to be requeued, as a cancel's (it ends for good); a note changes the job's reason."""
    loop = core.loop
    node = loop.observe(msg, core.clock())
    if node is not None and node in core.specs:
        core._apply(node)
    if not core.dirty and isinstance(msg, GpuUtilWindow) and core.pending and any(
            lender.may_lend(msg) and any(map(lender.wants, core.pending.values()))
            for lender in loop.lenders):
        core.dirty = True  # a GPU measured idle may lend to a job waiting for one now
    if not loop.plugins:
        return []
    view = LoopView(core.running, core.cluster.names, loop.measured, loop.drains, core.clock())
    out: list[Message] = []
    for d in loop.react(msg, view):
        match d:
            case LoopStop():
                out += stop(core, d)
            case Note():
                rec = core.records.get(d.job_id)
                if rec is not None and rec.reason != d.reason:
                    rec.reason = d.reason
                    core.touched.add(d.job_id)
            case Ignored():
                log.info("loop: %s: %s", d.job_id, d.why)
    return out


def stop(core: SchedulerCore, d: LoopStop) -> list[Message]:
    run = core.running.get(d.job_id)
    if run is None or run.stopping:
        return []
    run.stopping = True
    core.dirty = True
    if not d.requeue:
        core.records[d.job_id].cancelling = True
    out = core._stops(run, "preempted" if d.requeue else "cancelled")
    core._move(run.job, JobState.PREEMPTING, d.reason)
    out.append(core._job_event(run.job, JobState.PREEMPTING, d.reason, attempt=run.attempt))
    return out


def lend(core: SchedulerCore, state: CycleState) -> list[Message]:
    """After a cycle: the opportunistic jobs still waiting borrow lent share where the lenders
    find some (in arrival order). The slot holds no share in the model; the placement carries
    the job's share and says ``lent``."""
    loop = core.loop
    out: list[Message] = []
    offers: dict[str, list[Offer]] = {}
    for lender in loop.lenders:
        for job in sorted((j for j in core.pending.values() if lender.wants(j)),
                          key=lambda j: j.seq):
            if lender.name not in offers:  # once per cycle, and only when a job wants it
                view = LoopView(core.running, core.cluster.names, loop.measured, loop.drains,
                                state.now)
                offers[lender.name] = lender.offers(core.cluster, view)
            found = lender.take(job, core.cluster, offers[lender.name])
            if found is not None:
                out += _borrow(core, state, job, *found)
    return out


def _borrow(core: SchedulerCore, state: CycleState, job: Job, slot: Slot,
            why: str) -> list[Message]:
    """Hold ``slot`` (no share) for ``job``: its placement, lent, and its ``placed`` event."""
    rec = core.records[job.job_id]
    del core.pending[job.job_id]
    core.hold(job, [slot], rec.attempt, since=state.now)
    core._move(job, JobState.PLACED, why)
    spec = job.spec
    assert spec is not None
    node, gpus = core.cluster.names[slot.node], list(slot.gpus)
    return [Placement(job=spec, node=node, gpus=gpus, gpu_milli=job.milli,
                      attempt=rec.attempt, lent=True, ts=state.now),
            core._job_event(job, JobState.PLACED, why, node=node, gpus=gpus,
                            gpu_milli=job.milli, member=0, attempt=rec.attempt)]
