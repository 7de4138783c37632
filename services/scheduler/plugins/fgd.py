"""Score: fragmentation gradient descent (FGD, USENIX ATC'23, "Beware of Fragmentation").

A node's fragmentation, seen by one kind of task, is the free GPU share that task could not use
there: *all* of it when the task does not fit the node for any resource the fit test checks
(enough GPUs with its per-GPU share free, its CPU, its memory, its GPU model), else the free
share of each GPU too small for its per-GPU share. The node's fragmentation is the sum over the
workload's task kinds, weighted by how common each kind is. FGD puts a member where the
fragmentation grows least (its score), and a GPU share on the GPU of that node where it grows
least (its reserve).

A kind is a class of GPU request: (GPUs, share per GPU, GPU models), every class kept, with the
CPU and memory its tasks ask for on average. (The paper's simulator keys kinds by the exact CPU
too; on the Alibaba trace that scores 0.5-1.5 points lower here, see docs/scheduler.md.)
CPU-only kinds see all free GPU share of every node as fragment whatever happens, so they add
the same to every node and are left out of the sum.

Fast: fragmentation depends only on a node's free shape (``Cluster.shape``), so every value is
computed once per shape and kept by shape id; a decision computes only shapes it has not met.

The workload is the plugin's typical jobs when given (the simulator passes the trace's), else
the jobs pending, kept while their mix stays within ``DRIFT`` of the one the cache was built on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from services.scheduler.cluster import BoolArray, Cluster, IntArray, ShapeTable
from services.scheduler.framework import (
    MAX_SCORE,
    CycleState,
    FloatArray,
    PluginArgs,
    normalize,
)
from services.scheduler.jobs import FULL, Job

NAME = "fgd"
PAPER = "fgd-paper"
DRIFT = 0.02  # a pending mix whose kind weights all moved less than this keeps the cache


@dataclass(frozen=True)
class Workload:
    """Task kinds, one per row: ``gpus`` GPUs of ``milli`` thousandths each, ``cpu_milli`` CPU,
    ``memory_mib`` memory, ``weight`` how common (sums to 1), allowed GPU ``models``; ``levels``
    are the distinct shares, ``level`` each kind's index into them, ``sets`` the distinct model
    sets and ``set_of`` each kind's."""

    gpus: IntArray
    milli: IntArray
    cpu_milli: IntArray
    memory_mib: IntArray
    weight: FloatArray
    models: tuple[tuple[str, ...], ...]
    levels: IntArray
    level: IntArray
    sets: tuple[tuple[str, ...], ...]
    set_of: IntArray

    def close_to(self, other: Workload) -> bool:
        return (self.models == other.models and np.array_equal(self.gpus, other.gpus)
                and np.array_equal(self.milli, other.milli)
                and np.array_equal(self.cpu_milli, other.cpu_milli)
                and np.array_equal(self.memory_mib, other.memory_mib)
                and float(np.abs(self.weight - other.weight).max(initial=0.0)) < DRIFT)


def workload_of(jobs: Iterable[tuple[Job, float]], exact_cpu: bool = False) -> Workload:
    """Every class of GPU job (GPUs, share per GPU, models), weighted by its share of the jobs'
    total weight; the CPU and memory a class asks for are its jobs' weighted means. With
    ``exact_cpu`` (the paper's kinds): one kind per exact CPU request too, and no memory."""
    acc: dict[tuple[int, int, tuple[str, ...], int], list[float]] = defaultdict(
        lambda: [0.0] * 3)
    for job, weight in jobs:
        if job.gpus > 0 and job.milli > 0:
            a = acc[(job.gpus, job.milli, job.models, job.cpu_milli if exact_cpu else -1)]
            a[0] += weight
            a[1] += weight * job.cpu_milli
            a[2] += 0 if exact_cpu else weight * job.memory_mib
    kinds = sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[0]))
    total = sum(v[0] for _, v in kinds) or 1.0
    milli = np.array([k[1] for k, _ in kinds], np.int64)
    levels, level = np.unique(milli, return_inverse=True)
    models = tuple(k[2] for k, _ in kinds)
    sets = tuple(sorted(set(models)))
    return Workload(
        gpus=np.array([k[0] for k, _ in kinds], np.int64), milli=milli,
        cpu_milli=np.array([v[1] / max(v[0], 1e-12) for _, v in kinds], np.int64),
        memory_mib=np.array([v[2] / max(v[0], 1e-12) for _, v in kinds], np.int64),
        weight=np.array([v[0] / total for _, v in kinds], np.float64), models=models,
        levels=levels.astype(np.int64), level=level.ravel().astype(np.int64), sets=sets,
        set_of=np.array([sets.index(x) for x in models], np.int64))


def fragmentation(w: Workload, eff: IntArray, host: IntArray, model_ok: BoolArray) -> FloatArray:
    """Expected unusable GPU share (thousandths) of each row: ``eff`` (R, G) free shares,
    ``host`` (R, 2+) free CPU and memory, ``model_ok`` (R, len(w.sets))."""
    ge = eff[:, :, None] >= w.levels[None, None, :]
    count = ge.sum(axis=1)  # GPUs with at least each level free
    small = np.where(ge, 0, eff[:, :, None]).sum(axis=1)  # free share on the other GPUs
    fits = ((count[:, w.level] >= w.gpus[None, :]) & (host[:, :1] >= w.cpu_milli[None, :])
            & (host[:, 1:2] >= w.memory_mib[None, :]) & model_ok[:, w.set_of])
    lost = np.where(fits, small[:, w.level], eff.sum(axis=1)[:, None])
    return np.asarray(lost @ w.weight, np.float64)


def _model_ok(w: Workload, cluster: Cluster, host: IntArray) -> BoolArray:
    table = np.array([[not s or name in s for s in w.sets] for name in cluster.models] or [[]],
                     bool).reshape(max(len(cluster.models), 1), len(w.sets))
    return table[host[:, 2]]


@dataclass
class _Entry:
    """Per job shape: the fragmentation change by shape id (NaN: not yet computed) and, for a
    GPU share, the free share of the GPU it should take on that shape."""

    delta: FloatArray = field(default_factory=lambda: np.zeros(0))
    share: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class _Cache:
    workload: Workload
    epoch: int
    before: FloatArray = field(default_factory=lambda: np.zeros(0))
    entries: dict[tuple[int, int, int, int], _Entry] = field(default_factory=dict)


def _grown(a: FloatArray | IntArray, size: int, fill: float) -> FloatArray | IntArray:
    if a.shape[0] >= size:
        return a
    out = np.full(max(size, 2 * a.shape[0]), fill, dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def _after_whole(job: Job, eff: IntArray) -> IntArray:
    """Rows sorted high to low: the member takes the first ``job.gpus`` (whole, free) GPUs."""
    out = eff.copy()
    out[:, : job.gpus] = 0
    return out


class Fgd:
    name = NAME

    def __init__(self, workload: Workload | None, paper: bool = False) -> None:
        self.fixed = workload
        self.paper = paper
        self.cache: _Cache | None = None

    def _cache(self, state: CycleState, cluster: Cluster) -> _Cache:
        w = self.fixed
        if w is None:
            w = state.memo.get(self.name)
            if w is None:
                w = state.memo[self.name] = workload_of(((j, 1.0) for j in state.pending),
                                                        self.paper)
        c = self.cache
        if c is None or c.epoch != cluster.shapes.epoch or not (
                c.workload is w or c.workload.close_to(w)):
            c = self.cache = _Cache(w, cluster.shapes.epoch)
        return c

    def score(self, state: CycleState, job: Job, cluster: Cluster) -> FloatArray:
        cache = self._cache(state, cluster)
        nodes = state.candidates
        if len(cache.workload.weight) == 0:
            return np.full(len(nodes), 100.0)
        # Scored once per free shape among the nodes, then spread to the nodes of each shape.
        ids, index = cluster.by_shape(nodes)
        entry = self._entry(cache, job, cluster, ids)
        if self.paper:  # the paper's score: a whole number, sigmoid of the drop, ties at random
            return np.floor(MAX_SCORE / (1.0 + np.exp(entry.delta[ids] / FULL)))[index]
        return normalize(entry.delta[ids], higher_is_better=False)[index]

    def reserve(self, state: CycleState, job: Job, cluster: Cluster, node: int
                ) -> tuple[int, ...] | None:
        """For a GPU share: the GPU of ``node`` where the fragmentation grows least (computed
        with the node's score, kept by its shape). Whole GPUs: no preference."""
        cache = self._cache(state, cluster)
        if job.milli >= FULL or len(cache.workload.weight) == 0:
            return None
        ids = cluster.shape[[node]]
        share = int(self._entry(cache, job, cluster, ids).share[ids[0]])
        return cluster.pick_gpus(node, job.gpus, job.milli, share)

    def _entry(self, cache: _Cache, job: Job, cluster: Cluster, ids: IntArray) -> _Entry:
        key = (job.gpus, job.milli, job.cpu_milli, job.memory_mib)
        entry = cache.entries.get(key)
        if entry is None:
            entry = cache.entries[key] = _Entry()
        size = len(cluster.shapes)
        entry.delta = _grown(entry.delta, size, np.nan)  # type: ignore[assignment]
        entry.share = _grown(entry.share, size, -1)  # type: ignore[assignment]
        cache.before = _grown(cache.before, size, np.nan)  # type: ignore[assignment]
        todo = ids[np.isnan(entry.delta[ids])]
        if len(todo):
            todo = np.unique(todo)
            self._compute(cache, entry, job, cluster.shapes, cluster, todo)
        return entry

    @staticmethod
    def _compute(cache: _Cache, entry: _Entry, job: Job, shapes: ShapeTable, cluster: Cluster,
                 todo: IntArray) -> None:
        w = cache.workload
        eff, host = shapes.eff[todo], shapes.host[todo]
        ok = _model_ok(w, cluster, host)
        fresh = np.isnan(cache.before[todo])
        if fresh.any():
            cache.before[todo[fresh]] = fragmentation(w, eff[fresh], host[fresh], ok[fresh])
        moved = host.copy()
        moved[:, 0] -= job.cpu_milli
        moved[:, 1] -= job.memory_mib
        if job.milli >= FULL:
            after = fragmentation(w, _after_whole(job, eff), moved, ok)
            entry.delta[todo] = after - cache.before[todo]
            return
        # A share: try each distinct free value it fits on (rows are sorted high to low).
        entry.delta[todo] = eff.sum(axis=1)  # where it fits no GPU: all of it lost
        distinct = np.ones_like(eff, bool)
        distinct[:, 1:] = eff[:, 1:] != eff[:, :-1]
        row, col = np.nonzero((eff >= job.milli) & distinct)
        tried = eff[row].copy()
        tried[np.arange(len(row)), col] -= job.milli
        frag = fragmentation(w, tried, moved[row], ok[row])
        # Least fragmentation per shape; on a tie the tightest GPU (the later column).
        order = np.lexsort((-col, frag, row))
        first = np.ones(len(order), bool)
        first[1:] = row[order][1:] != row[order][:-1]
        best = order[first]
        entry.delta[todo[row[best]]] = frag[best] - cache.before[todo[row[best]]]
        entry.share[todo[row[best]]] = eff[row[best], col[best]]


def factory(args: PluginArgs) -> Fgd:
    return Fgd(workload_of(args.workload) if args.workload else None)


def paper_factory(args: PluginArgs) -> Fgd:
    """FGD as the paper's simulator scores it: kinds by exact CPU, no memory, and a whole-number
    score (sigmoid of the fragmentation drop) with ties broken at random."""
    fgd = Fgd(workload_of(args.workload, exact_cpu=True) if args.workload else None, paper=True)
    fgd.name = PAPER
    return fgd
