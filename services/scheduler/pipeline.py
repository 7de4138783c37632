"""A profile: the enabled plugins sorted into stages, and the placement of one job through them.

1. pre-filters check the job as a whole (quota, gang capacity);
2. for each member: filters narrow the nodes, scores rank them, the best node takes the member
   and holds its GPUs while the next member is placed: the reserve plugins choose which GPUs
   when the node was chosen among several (a lone candidate is not weighed), else
   ``Cluster.pick_gpus`` does;
3. permits have the last say; if anything fails, every member is given back (all or none).

When every score plugin is a ``ShapeScore`` and the job holds no node yet, step 2 works by
free shape: each shape's value (the weighted total of its scores, or minus infinity where a
``ShapeFilter`` refuses it) is kept across decisions (``Totals``), every node takes its shape's
value, and the other filters mask nodes out. Only shapes not met before are worked out: the
same choice as filtering and scoring every node, for a few numpy calls. When no node is left,
the filters run node by node for their reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.scheduler.cluster import BoolArray, Cluster, IntArray, ShapeTable, Slot
from services.scheduler.framework import (
    SUCCESS,
    Code,
    CycleState,
    Filter,
    FloatArray,
    Permit,
    PluginArgs,
    PostFilter,
    PreFilter,
    QueueOrder,
    Registry,
    Reserve,
    Score,
    ShapeFilter,
    ShapeScore,
    Status,
)
from services.scheduler.jobs import Job
from services.scheduler.loop import DrainFilter, Lender, LoopPlugin

STAGES = ("key", "pre_filter", "filter", "score", "reserve", "permit", "post_filter",
          "react", "filters_drained", "offers")
LOOP_STAGES = (LoopPlugin, DrainFilter, Lender)  # the closed loop's (services/scheduler/loop.py)
# When some score plugin is not a ShapeScore: above this many candidate nodes, score one node
# per free shape (``Cluster.representatives``) instead of every node.
GROUP_ABOVE = 2048
# Totals kept, summed over job shapes and plugin versions: past this (32 MiB), all are dropped
MAX_TOTALS = 1 << 22


@dataclass
class Attempt:
    status: Status
    slots: list[Slot] = field(default_factory=list)


@dataclass
class Totals:
    """A shape-scored profile's values, kept across decisions: per job shape and the score
    plugins' versions, each shape id's total, or minus infinity where a shape filter refuses
    it (NaN: not yet worked out). Shape ids are never reused (``Cluster.shape``), so a value
    stays right until the ids are renumbered."""

    epoch: int = -1
    by_key: dict[Hashable, FloatArray] = field(default_factory=dict)
    cells: int = 0  # the rows' lengths summed

    def row(self, key: Hashable, shapes: ShapeTable) -> FloatArray:
        if self.epoch != shapes.epoch or self.cells > MAX_TOTALS:
            self.epoch, self.by_key, self.cells = shapes.epoch, {}, 0
        row = self.by_key.get(key)
        if row is None or row.shape[0] < len(shapes):
            grown = np.full(max(2 * len(shapes), 64), np.nan)
            if row is not None:
                grown[: row.shape[0]] = row
                self.cells -= row.shape[0]
            row = self.by_key[key] = grown
            self.cells += grown.shape[0]
        return row


@dataclass
class Profile:
    queue_order: list[QueueOrder] = field(default_factory=list)
    pre_filters: list[PreFilter] = field(default_factory=list)
    filters: list[Filter] = field(default_factory=list)
    scores: list[tuple[Score, float]] = field(default_factory=list)
    reserves: list[Reserve] = field(default_factory=list)
    permits: list[Permit] = field(default_factory=list)
    post_filters: list[PostFilter] = field(default_factory=list)
    plugins: list[object] = field(default_factory=list)  # every plugin, in the order enabled
    shaped: bool = True  # every score plugin is a ShapeScore (decisions score shapes, not nodes)
    shape_filters: list[ShapeFilter] = field(default_factory=list)  # filters by shape ...
    node_filters: list[Filter] = field(default_factory=list)  # ... and the others
    totals: Totals = field(default_factory=Totals, repr=False, compare=False)
    _value: FloatArray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)
    _best: BoolArray = field(default_factory=lambda: np.empty(0, bool), repr=False,
                             compare=False)
    _weights: FloatArray = field(default_factory=lambda: np.zeros((0, 1)), repr=False,
                                 compare=False)  # the score plugins' weights, a column
    # The score plugins' shape versions, asked once per cycle state and shape numbering
    _versions: tuple[object, int, tuple[Hashable, ...]] | None = field(
        default=None, repr=False, compare=False)

    @classmethod
    def build(cls, registry: Registry, names: Iterable[str], args: PluginArgs) -> Profile:
        """Plugins by name (``"name"`` or ``"name:weight"``), each put in every stage it has."""
        profile = cls()
        for entry in names:
            name, _, weight = entry.partition(":")
            if name not in registry:
                raise KeyError(f"unknown plugin {name!r}; known: {', '.join(sorted(registry))}")
            plugin = registry[name](args)
            profile._add(plugin, float(weight) if weight else 1.0)
        return profile

    def _add(self, plugin: object, weight: float) -> None:
        """Put ``plugin`` in every stage it implements; one that implements none is refused.
        Every plugin is kept in ``plugins`` too (the closed loop asks them for its stages)."""
        stages: list[tuple[type, Callable[[Any], None]]] = [
            (QueueOrder, self.queue_order.append), (PreFilter, self.pre_filters.append),
            (Filter, self.filters.append), (Score, lambda p: self.scores.append((p, weight))),
            (Reserve, self.reserves.append), (Permit, self.permits.append),
            (PostFilter, self.post_filters.append),
            *((loop, lambda p: None) for loop in LOOP_STAGES)]
        joined = [add for stage, add in stages if isinstance(plugin, stage)]
        if not joined:
            raise TypeError(f"plugin {getattr(plugin, 'name', plugin)!r} implements no stage "
                            f"(one of: {', '.join(STAGES)})")
        self.plugins.append(plugin)
        if isinstance(plugin, Score):
            self.shaped = self.shaped and isinstance(plugin, ShapeScore)
        if isinstance(plugin, Filter):
            if isinstance(plugin, ShapeFilter):
                self.shape_filters.append(plugin)
            else:
                self.node_filters.append(plugin)
        for add in joined:
            add(plugin)
        self._weights = np.array([[w] for _, w in self.scores], np.float64)

    # -- queue -------------------------------------------------------------------------------

    def order(self, state: CycleState, jobs: list[Job], cluster: Cluster) -> list[Job]:
        """Jobs in the order the queue plugins give, arrival order last."""
        # Each plugin's keys in one pass, then one stable numpy sort by them all: far fewer
        # Python steps than a key function per job.
        n = len(jobs)
        columns = [p.keys(state, jobs, cluster) for p in self.queue_order]
        seqs = np.fromiter([j.seq for j in jobs], np.int64, n)
        return [jobs[i] for i in np.lexsort((seqs, *reversed(columns))).tolist()]

    # -- placement ---------------------------------------------------------------------------

    def place(self, state: CycleState, job: Job, cluster: Cluster) -> Attempt:
        """Place every member of ``job`` or none; placed members stay allocated in ``cluster``."""
        state.start_attempt()
        status = SUCCESS
        for pre in self.pre_filters:
            status = pre.pre_filter(state, job, cluster)
            if not status.ok:
                break
        if status.ok:
            for member in range(job.gang):
                status = self._place_member(state, job, cluster, member)
                if not status.ok:
                    break
        for permit in self.permits if status.ok else ():
            status = permit.permit(state, job, cluster)
            if not status.ok:
                break
        if not status.ok:
            for slot in state.members:
                cluster.release(slot)
            return Attempt(status)
        return Attempt(SUCCESS, list(state.members))

    def explain(self, state: CycleState, job: Job, cluster: Cluster) -> Status:
        """After a failed attempt: post-filters (preemption, reservation) in turn."""
        for plugin in self.post_filters:
            status = plugin.post_filter(state, job, cluster)
            if status.code in (Code.SUCCESS, Code.WAIT):
                return status
        return SUCCESS

    def _place_member(self, state: CycleState, job: Job, cluster: Cluster, member: int) -> Status:
        node, several = (self._by_shape(state, job, cluster)
                         if self.shaped and self.scores and not state.members else (-1, False))
        if node < 0:
            cands = self._filter(state, job, cluster)
            if isinstance(cands, Status):
                return self._unplaced(job, member, cands)
            if len(cands) > GROUP_ABOVE:
                held = [s.node for s in state.members if state.feasible[s.node]]
                cands = np.union1d(cluster.representatives(cands), np.array(held, np.int64))
            state.candidates = cands
            node, several = int(cands[self._best_index(state, job, cluster)]), len(cands) > 1
        gpus = self._reserve(state, job, cluster, node) if several else None
        if gpus is None:
            gpus = cluster.pick_gpus(node, job.gpus, job.milli)
        slot = Slot(node, gpus, job.milli, job.cpu_milli, job.memory_mib)
        cluster.allocate(slot)
        state.members.append(slot)
        return SUCCESS

    def _filter(self, state: CycleState, job: Job, cluster: Cluster) -> IntArray | Status:
        """The nodes every filter keeps, or why there are none."""
        every = state.feasible = cluster.every_node()  # masks are read-only, never changed
        for f in self.filters:
            mask, status = f.filter(state, job, cluster)
            feasible = mask if state.feasible is every else state.feasible & mask
            # A filter that passes has found a node (or kept every node); one that fails may not.
            if not status.ok and not feasible.any():
                return status
            state.feasible = feasible
        cands = np.flatnonzero(state.feasible)
        if len(cands) == 0:
            last = self.filters[-1].name if self.filters else ""
            return Status(Code.UNSCHEDULABLE, "no node fits", last)
        return cands

    def _by_shape(self, state: CycleState, job: Job, cluster: Cluster) -> tuple[int, bool]:
        """The node the first member takes, chosen by its free shape's value, and whether
        another node was feasible; (-1, False) when none is (the filters then say why)."""
        n = cluster.n_nodes
        if n == 0:
            return -1, False
        sids = cluster.shape[:n]
        row = self.totals.row((job.shape, *self._shape_versions(state, cluster)), cluster.shapes)
        if self._value.shape[0] != n:  # scratch, reused so that it stays in the cache
            self._value, self._best = np.empty(n), np.empty(n, bool)
        value = row.take(sids, out=self._value)
        top = value[value.argmax()]  # argmax finds a NaN first: then NaN
        if top != top:  # NaN: some shapes not met before
            new = np.unique(sids[np.isnan(value)])
            ok = np.ones(len(new), bool)
            for shaped in self.shape_filters:
                ok &= shaped.fits_shapes(job, cluster, new)
            row[new] = -np.inf
            if ok.any():
                row[new[ok]] = self._total(state, job, cluster, new[ok])
            value = row.take(sids, out=self._value)
            top = value[value.argmax()]
        if self.node_filters:
            every = state.feasible = cluster.every_node()
            for f in self.node_filters:
                mask, _ = f.filter(state, job, cluster)
                if mask is not every:
                    value = np.where(mask, value, -np.inf)
                    top = value[value.argmax()]
        if top == -np.inf:
            return -1, False
        best = np.greater_equal(value, top - 1e-9, out=self._best).nonzero()[0]
        if len(best) > 1:
            return _one_of(best, state), True
        return int(best[0]), int(np.count_nonzero(np.greater(value, -np.inf, out=self._best))) > 1

    def _shape_versions(self, state: CycleState, cluster: Cluster) -> tuple[Hashable, ...]:
        """The score plugins' ``shape_version``s: a plugin's state changes between cycles (or
        when shape ids are renumbered), so they are asked once per cycle state."""
        seen = self._versions
        epoch = cluster.shapes.epoch
        if seen is None or seen[0] is not state or seen[1] != epoch:
            seen = self._versions = (state, epoch, tuple(
                p.shape_version(state, cluster)  # type: ignore[attr-defined]
                for p, _ in self.scores))
        return seen[2]

    @staticmethod
    def _unplaced(job: Job, member: int, status: Status) -> Status:
        if status.ok:
            return Status(Code.UNSCHEDULABLE, "no node fits", status.plugin)
        if job.gang > 1 and status.reason:
            return Status(status.code, f"member {member + 1} of {job.gang}: {status.reason}",
                          status.plugin)
        return status

    def _reserve(self, state: CycleState, job: Job, cluster: Cluster, node: int
                 ) -> tuple[int, ...] | None:
        """The GPUs the first reserve plugin with a preference chooses on ``node``."""
        for plugin in self.reserves:
            gpus = plugin.reserve(state, job, cluster, node)
            if gpus is not None:
                return gpus
        return None

    def _best_index(self, state: CycleState, job: Job, cluster: Cluster) -> int:
        """Index into ``state.candidates`` of the node the member takes."""
        cands = state.candidates
        if len(cands) == 1 or not self.scores:
            return 0
        total = self._weighted([p.score(state, job, cluster) for p, _ in self.scores])
        best = (total >= total.max() - 1e-9).nonzero()[0]
        return int(best[0]) if len(best) == 1 else _one_of(best, state)

    def _total(self, state: CycleState, job: Job, cluster: Cluster, ids: IntArray
               ) -> FloatArray:
        """The weighted sum of the shape scores of ``ids``."""
        return self._weighted([p.score_shapes(state, job, cluster, ids)  # type: ignore[attr-defined]
                               for p, _ in self.scores])

    def _weighted(self, scores: list[FloatArray]) -> FloatArray:
        """Each plugin's scores clipped to 0..100, times its weight, summed."""
        # np.clip without its Python wrapper (the same values, NaN included); the rows summed
        # in order, as a running sum would
        clipped = np.minimum(np.maximum(np.array(scores, np.float64), 0.0), 100.0)
        return np.asarray((clipped * self._weights).sum(axis=0), np.float64)


def _one_of(best: IntArray, state: CycleState) -> int:
    """Like the Kubernetes scheduler: one of the best-scoring nodes, chosen at random (what
    ``rng.choice(best)`` draws, without its overhead)."""
    return int(best[state.rng.integers(len(best))])
