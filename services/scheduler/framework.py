"""The plugin framework: Status values, the per-cycle state, the plugin stages and the registry.

Shaped like the Kubernetes scheduler framework. Every plugin method takes the same three
arguments ``(state, job, cluster)`` (``keys`` takes the queue's jobs in place of one job);
a plugin implements one or more stages:

* ``keys``       queue order: a number per job, lower goes first (the enabled plugins' columns
                 sort the queue, the first plugin's first)
* ``pre_filter`` a check of the job as a whole -> ``Status``
* ``filter``     which nodes may take the next member -> ``(mask over nodes, Status)``
* ``score``      how good each candidate node is -> floats in 0..100, one per ``state.candidates``
* ``reserve``    which GPUs of the chosen node the member takes -> GPU indices, or ``None`` for
                 no preference (takes one more argument: the node)
* ``permit``     a last say on the whole placement -> ``Status``
* ``post_filter`` what to do when the job cannot be placed (preempt, reserve) -> ``Status``

Outcomes are values, never exceptions. What one cycle learns travels in ``CycleState``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from services.scheduler.cluster import BoolArray, Cluster, IntArray, Slot
from services.scheduler.jobs import Job

FloatArray = npt.NDArray[np.float64]
MAX_SCORE = 100.0


class Code(IntEnum):
    SUCCESS = 0
    UNSCHEDULABLE = 1  # may fit later, or after preemption
    UNRESOLVABLE = 2  # will not fit however long it waits; preemption does not help
    WAIT = 3  # room is being made (preemption in flight, reservation held)


@dataclass(frozen=True, slots=True)
class Status:
    code: Code = Code.SUCCESS
    reason: str = ""
    plugin: str = ""
    ok: bool = field(init=False, compare=False, repr=False)  # code is SUCCESS (asked often)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", self.code == Code.SUCCESS)


SUCCESS = Status()


def unschedulable(plugin: str, reason: str) -> Status:
    return Status(Code.UNSCHEDULABLE, reason, plugin)


@dataclass
class Running:
    """A job that holds GPUs: where its members are and whether it borrows quota."""

    job: Job
    slots: list[Slot]
    started_at: float
    attempt: int = 0
    borrowed: bool = False
    stopping: bool = False  # a StopJob was sent; its GPUs are freed by the stop event


@dataclass
class Census:
    """The running jobs counted as they come and go (the core keeps it with ``running``): by
    priority, by tenant borrowing quota, and the GPU share each tenant holds. It answers in a
    few steps what a cycle asks often: may any job be preempted, what does a tenant hold."""

    priorities: dict[int, int] = field(default_factory=dict)  # priority -> running jobs
    borrowing: dict[str, int] = field(default_factory=dict)  # tenant -> jobs borrowing quota
    held: dict[str, int] = field(default_factory=dict)  # tenant -> GPU share, thousandths

    @classmethod
    def of(cls, runs: Iterable[Running]) -> Census:
        census = cls()
        for run in runs:
            census.add(run)
        return census

    def add(self, run: Running) -> None:
        self._count(run, 1)

    def remove(self, run: Running) -> None:
        self._count(run, -1)

    def _count(self, run: Running, sign: int) -> None:
        job = run.job
        _bump(self.priorities, job.priority, sign)
        if run.borrowed:
            _bump(self.borrowing, job.tenant, sign)
        _bump(self.held, job.tenant, sign * job.demand_milli)

    def may_preempt(self, job: Job, borrowing: bool) -> bool:
        """Whether some running job could be a victim of ``job`` (``evictable``'s test on
        the counts): one of lower priority, or, when ``job`` does not borrow, one of another
        tenant borrowing quota."""
        return (bool(self.priorities) and min(self.priorities) < job.priority) or (
            not borrowing and any(t != job.tenant for t in self.borrowing))


def _bump(counts: dict[Any, int], key: object, by: int) -> None:
    left = counts.get(key, 0) + by
    if left:
        counts[key] = left
    else:
        counts.pop(key, None)


@dataclass
class Reservation:
    """A blocked job's claim: nodes it will get at ``start``; backfill must not delay it."""

    job_id: str
    start: float
    nodes: BoolArray


@dataclass
class CycleState:
    """What one scheduling cycle knows and learns; a fresh one per cycle."""

    now: float
    rng: np.random.Generator
    running: Mapping[str, Running]
    pending: list[Job] = field(default_factory=list)
    capacity_milli: int = 0
    tenant_used: dict[str, int] = field(default_factory=dict)  # GPU share held, thousandths
    reservation: Reservation | None = None
    victims: list[str] = field(default_factory=list)  # chosen by preemption this cycle
    nominations: Mapping[str, list[str]] = field(default_factory=dict)  # job -> its victims
    memo: dict[str, Any] = field(default_factory=dict)  # cycle-wide, per plugin name
    census: Census = field(default_factory=Census)  # of ``running`` (counted when not given)
    # The attempt at hand: candidate nodes, members placed so far, scratch per plugin.
    feasible: BoolArray = field(default_factory=lambda: np.zeros(0, bool))
    candidates: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    members: list[Slot] = field(default_factory=list)
    borrowing: bool = False

    def __post_init__(self) -> None:
        if self.running and not self.census.priorities:
            self.census = Census.of(self.running.values())

    def start_attempt(self) -> None:
        self.members = []
        self.borrowing = False


@runtime_checkable
class QueueOrder(Protocol):
    name: str

    def keys(self, state: CycleState, jobs: list[Job], cluster: Cluster) -> FloatArray:
        """One number per job of ``jobs``, lower first (one call per cycle: a column, not a
        call per job)."""


@runtime_checkable
class PreFilter(Protocol):
    name: str

    def pre_filter(self, state: CycleState, job: Job, cluster: Cluster) -> Status: ...


@runtime_checkable
class Filter(Protocol):
    name: str

    def filter(self, state: CycleState, job: Job, cluster: Cluster) -> tuple[BoolArray, Status]:
        ...


@runtime_checkable
class ShapeFilter(Protocol):
    """A filter whose verdict on a node depends only on the node's free shape
    (``Cluster.shape``) and the job's shape (``Job.shape``). ``fits_shapes`` answers for
    distinct shape ids and must equal ``filter``'s mask on every node of each shape. With
    shape scores, a decision then needs one value per shape (``pipeline.Totals``); ``filter``
    still runs when no node is left, for its reason."""

    name: str

    def filter(self, state: CycleState, job: Job, cluster: Cluster) -> tuple[BoolArray, Status]:
        ...

    def fits_shapes(self, job: Job, cluster: Cluster, ids: IntArray) -> BoolArray: ...


@runtime_checkable
class Score(Protocol):
    name: str

    def score(self, state: CycleState, job: Job, cluster: Cluster) -> FloatArray: ...


@runtime_checkable
class ShapeScore(Protocol):
    """A score that, for a member whose job holds no node yet, depends only on the node's free
    shape (``Cluster.shape``), the job's shape (``Job.shape``) and the plugin's own state,
    which ``shape_version`` names (equal versions: equal scores; ``None`` when the plugin has
    none): not on the other candidates. ``score_shapes`` scores distinct shape ids and must
    equal ``score`` on every node of each shape. When every score plugin of a profile is one,
    a decision looks up each shape's total, kept across decisions (``pipeline.Totals``), and
    works out only shapes it has not met."""

    name: str

    def score_shapes(self, state: CycleState, job: Job, cluster: Cluster, ids: IntArray
                     ) -> FloatArray: ...

    def shape_version(self, state: CycleState, cluster: Cluster) -> Hashable: ...


@runtime_checkable
class Reserve(Protocol):
    """Like the Kubernetes framework's Reserve: the node is chosen; which of its GPUs does the
    member take? ``None`` leaves the choice to the next reserve plugin, and at last to the
    cluster's own rule (``Cluster.pick_gpus``: best fit, fewest NVLink domains)."""

    name: str

    def reserve(self, state: CycleState, job: Job, cluster: Cluster, node: int
                ) -> tuple[int, ...] | None: ...


@runtime_checkable
class Permit(Protocol):
    name: str

    def permit(self, state: CycleState, job: Job, cluster: Cluster) -> Status: ...


@runtime_checkable
class PostFilter(Protocol):
    name: str

    def post_filter(self, state: CycleState, job: Job, cluster: Cluster) -> Status: ...


@dataclass(frozen=True)
class PluginArgs:
    """What a factory may use to build its plugin (from the settings)."""

    quotas: Mapping[str, float] = field(default_factory=dict)  # tenant -> GPUs
    borrowing: bool = True
    weights: Mapping[str, float] = field(default_factory=dict)  # tenant -> fair-share weight
    workload: tuple[tuple[Job, float], ...] = ()  # typical jobs and their share, for FGD
    # Opportunistic jobs (the closed loop): their queues, the measured p95 (percent) under
    # which an allocated GPU lends its share, and the p95 at which its owners are busy again.
    opportunistic_queues: frozenset[str] = frozenset()
    lend_below_util: float = 10.0
    owners_busy_util: float = 50.0


Factory = Callable[[PluginArgs], object]
Registry = Mapping[str, Factory]


def fit_score(left: FloatArray) -> FloatArray:
    """0..100, higher for less left over (in GPUs; never negative where the member fits): a
    node's score that does not depend on the other candidates."""
    return MAX_SCORE / (1.0 + np.maximum(left, 0.0))


def normalize(raw: FloatArray, higher_is_better: bool = True) -> FloatArray:
    """Map raw values onto 0..100 (all equal -> all 100)."""
    if raw.size == 0:
        return raw
    lo, hi = float(raw.min()), float(raw.max())
    if hi - lo < 1e-12:
        return np.full(raw.shape, MAX_SCORE)
    scaled = (raw - lo) / (hi - lo) * MAX_SCORE
    return scaled if higher_is_better else MAX_SCORE - scaled
