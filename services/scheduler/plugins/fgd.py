"""Score: fragmentation gradient descent (FGD, USENIX ATC'23, "Beware of Fragmentation").

A node's fragmentation, seen by one kind of task, is the free GPU share that task could not use
there: *all* of it when the task does not fit the node for any resource the fit test checks
(enough GPUs with its per-GPU share free, its CPU, its memory, its GPU model) and, for a
CPU-only kind, always; else the free share of each GPU too small for its per-GPU share. The
node's fragmentation is the sum over the workload's task kinds, weighted by how common each kind
is. A member goes where the fragmentation grows least, a GPU share on the GPU of that node where
it grows least (its reserve).

As in the paper's simulator, a kind is one exact request (GPUs, share per GPU, GPU models, CPU;
a CPU request under 0.1 counts as 0.1), CPU-only kinds included, and the score is a whole
number, 100 times the sigmoid of the drop in fragmentation (in GPUs): near no change, nodes
within about 0.04 GPU of each other tie (0.1 GPU two GPUs away), and one of them is taken at
random. Unlike the paper, a kind also needs its tasks' mean memory to fit (the fit test checks
memory), and a task that asks for no GPU, which changes the fragmentation only where it makes
some kind stop fitting (so most nodes tie), goes among equal scores where the least GPU share
is free, not at random (it would use CPU and memory that free GPUs need). As in the paper, the
kinds' CPU floor of 0.1 means a node with less than that free sees its GPUs as fragment even
for jobs that ask for no CPU. Every kind is kept: the paper's
configured cut to the most common kinds (``popularity``) drops the rare multi-GPU kinds and
costs 5 points on the Alibaba trace. ``fgd-paper`` is the paper's own: no memory, and a share on
the first GPU in index order among those with the best score. docs/scheduler.md has what each
choice is worth.

Fast: fragmentation depends only on a node's free shape (``Cluster.shape``), so every value is
computed once per shape and kept by shape id; a decision computes only shapes it has not met.

The workload is the plugin's typical jobs when given (the simulator passes the trace's), else
the jobs pending, kept while their mix stays within ``DRIFT`` of the one the cache was built on.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from services.scheduler.cluster import CPU, MEM, MODEL, BoolArray, Cluster, IntArray, ShapeTable
from services.scheduler.framework import (
    MAX_SCORE,
    CycleState,
    FloatArray,
    PluginArgs,
    fit_score,
)
from services.scheduler.jobs import FULL, Job

NAME = "fgd"
PAPER = "fgd-paper"
# Keys a kind by class, then CPU: far above any CPU a node or job may declare (the contracts
# bound both to INT32_MAX millicores), so a class's keys never reach the next class's.
CPU_SPAN = 1 << 40
MIN_CPU = 100  # Kubernetes counts a CPU request under 100 millicores as 100 when scoring
DRIFT = 0.02  # a pending mix of which less than this share changed kind keeps the cache
MEMORY_DRIFT = 0.05  # ... while each kind's mean memory moved less than this share
# For a task that asks for no GPU: up to this many points (under one, so it only breaks ties
# between equal whole-number scores) for the node with the least free GPU share.
GPU_FREE_TIE = 0.9


Kind = tuple[int, int, tuple[str, ...], int]  # GPUs, share per GPU, models, CPU


@dataclass(frozen=True)
class Workload:
    """Task kinds, one per row: ``gpus`` GPUs (0: CPU-only, ``cpu_only``) of ``milli``
    thousandths each, ``cpu_milli`` CPU, ``memory_mib`` memory (its tasks' mean; 0 where not
    looked at), ``weight`` how common (sums to 1), allowed GPU ``models``; ``levels`` are the
    distinct shares, ``level`` each kind's index into them, ``sets`` the distinct model sets
    and ``set_of`` each kind's."""

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
    cpu_only: BoolArray
    class_gpus: IntArray  # the classes (GPUs, share, model set) of the GPU kinds
    class_level: IntArray
    class_set: IntArray
    by_class: FloatArray  # (kinds, classes): a kind's weight in its class's column
    cpu_keys: IntArray  # the GPU kinds by class, then CPU: class * CPU_SPAN + CPU
    cpu_cum: FloatArray  # their weights summed in that order (a leading 0)
    class_start: IntArray  # where each class begins in that order
    memory_max: int  # the most memory any kind needs

    @cached_property
    def class_base(self) -> IntArray:
        """Each class's first key (``cpu_keys``): the class times ``CPU_SPAN``."""
        return np.arange(len(self.class_gpus), dtype=np.int64) * CPU_SPAN

    @cached_property
    def class_cum(self) -> FloatArray:
        """``cpu_cum`` where each class begins."""
        return self.cpu_cum[self.class_start]

    @cached_property
    def model_tables(self) -> dict[tuple[str, ...], BoolArray]:
        """By the cluster's GPU models (``_model_ok``): which model sets allow each."""
        return {}

    @cached_property
    def total_weight(self) -> float:
        return float(self.weight.sum())

    @cached_property
    def mix(self) -> dict[Kind, tuple[float, int]]:
        """Each kind's weight and memory, by its request."""
        return {(g, m, models, c): (w, mem) for g, m, models, c, w, mem in zip(
            self.gpus.tolist(), self.milli.tolist(), self.models, self.cpu_milli.tolist(),
            self.weight.tolist(), self.memory_mib.tolist(), strict=True)}

    def close_to(self, other: Workload) -> bool:
        """Less than ``DRIFT`` of the jobs changed kind, and the memory of every kind in both
        moved less than ``MEMORY_DRIFT`` (a pending queue changes a little every cycle)."""
        mine, theirs = self.mix, other.mix
        moved = sum(abs(mine.get(k, (0.0, 0))[0] - theirs.get(k, (0.0, 0))[0])
                    for k in mine.keys() | theirs.keys()) / 2
        return moved < DRIFT and all(
            abs(mem - theirs[k][1]) <= MEMORY_DRIFT * max(mem, 1)
            for k, (_, mem) in mine.items() if k in theirs)


def workload_of(jobs: Iterable[tuple[Job, float]], popularity: float = 1.0,
                memory: bool = True) -> Workload:
    """The task kinds of ``jobs``: one per exact request (GPUs, share per GPU, models, CPU; a
    CPU request under ``MIN_CPU`` counts as ``MIN_CPU``), CPU-only kinds included, weighted by
    their share of the jobs' total weight, with the mean memory their jobs ask for (0 without
    ``memory``). With ``popularity`` under 1, only the most common kinds that together make
    that share of the jobs, their weights scaled back to a sum of 1."""
    acc: dict[Kind, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for job, weight in jobs:
        n = max(job.gpus, 0)
        a = acc[(n, job.milli if n else 0, job.models, max(job.cpu_milli, MIN_CPU))]
        a[0] += weight
        a[1] += weight * job.memory_mib if memory else 0.0
    total = sum(v[0] for v in acc.values())
    ranked = sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[0][3], kv[0][1], kv[0][0],
                                                 kv[0][2]))
    kept: list[tuple[Kind, list[float]]] = ranked
    if popularity < 1:
        kept, covered = [], 0.0
        for kind in ranked:
            if covered >= popularity * total:
                break
            kept.append(kind)
            covered += kind[1][0]
    weight = sum(v[0] for _, v in kept) or 1.0
    milli = np.array([k[1] for k, _ in kept], np.int64)
    levels, level = np.unique(milli, return_inverse=True)
    level = level.ravel().astype(np.int64)
    models = tuple(k[2] for k, _ in kept)
    sets = tuple(sorted(set(models)))
    set_of = np.array([sets.index(x) for x in models], np.int64)
    gpus = np.array([k[0] for k, _ in kept], np.int64)
    weights = np.array([v[0] / weight for _, v in kept], np.float64)
    # Classes (GPUs, share, model set) of the GPU kinds; a CPU-only kind is in none (-1).
    classes: dict[tuple[int, int, int], int] = {}
    klass = np.array([classes.setdefault((n, lv, st), len(classes)) if n else -1
                      for n, lv, st in zip(gpus.tolist(), level.tolist(), set_of.tolist(),
                                           strict=True)], np.int64)
    keys = list(classes)
    gpu_kinds = np.flatnonzero(klass >= 0)
    by_class = np.zeros((len(kept), len(classes)), np.float64)
    by_class[gpu_kinds, klass[gpu_kinds]] = weights[gpu_kinds]
    cpu = np.array([k[3] for k, _ in kept], np.int64)
    cpu_keys = klass[gpu_kinds] * CPU_SPAN + cpu[gpu_kinds]
    order = np.argsort(cpu_keys, kind="stable")
    memory_mib = np.array([v[1] / max(v[0], 1e-12) for _, v in kept], np.int64)
    return Workload(
        gpus=gpus, milli=milli, cpu_milli=cpu, memory_mib=memory_mib,
        weight=weights, models=models, levels=levels.astype(np.int64), level=level, sets=sets,
        set_of=set_of, cpu_only=gpus == 0,
        class_gpus=np.array([k[0] for k in keys], np.int64),
        class_level=np.array([k[1] for k in keys], np.int64),
        class_set=np.array([k[2] for k in keys], np.int64), by_class=by_class,
        cpu_keys=cpu_keys[order],
        cpu_cum=np.concatenate(([0.0], np.cumsum(weights[gpu_kinds][order]))),
        class_start=np.searchsorted(cpu_keys[order],
                                    np.arange(len(keys), dtype=np.int64) * CPU_SPAN),
        memory_max=int(memory_mib.max(initial=0)))


def pending_workload(state: CycleState, memory: bool = True) -> Workload:
    """The kinds of the jobs pending this cycle (worked out once per cycle and memory rule)."""
    key = NAME if memory else PAPER
    w = state.memo.get(key)
    if w is None:
        # Jobs of one shape count once, weighted by their number (the same sums: whole
        # numbers), so a queue of thousands of jobs of few shapes is read in one quick pass.
        alike: dict[tuple[object, ...], list[Any]] = {}
        for job in state.pending:
            seen = alike.get(job.shape)
            if seen is None:
                alike[job.shape] = [job, 1.0]
            else:
                seen[1] += 1.0
        w = state.memo[key] = workload_of(((j, n) for j, n in alike.values()), memory=memory)
    return w


def fragmentation(w: Workload, eff: IntArray, host: IntArray, model_ok: BoolArray) -> FloatArray:
    """Expected unusable GPU share (thousandths) of each row: ``eff`` (R, G) free shares,
    ``host`` (R, 2+) free CPU and memory, ``model_ok`` (R, len(w.sets)).

    All of a row's free share is lost to a kind, except where the kind fits: then only the
    share on GPUs smaller than its share is. Kinds of one class (GPUs, share, models) differ
    only in CPU and memory, so the weight of each class's kinds with room on the row is found
    at once (``_weight_with_room``), and the GPU side is worked out per class, not per kind
    (there may be thousands of kinds; a CPU-only kind is in no class: it uses no GPU share)."""
    ge = eff[:, :, None] >= w.levels[None, None, :]
    count = ge.sum(axis=1)  # GPUs with at least each level free
    small = np.where(ge, 0, eff[:, :, None]).sum(axis=1)  # free share on the other GPUs
    total = eff.sum(axis=1)
    weight = _weight_with_room(w, host)
    fits = (count[:, w.class_level] >= w.class_gpus[None, :]) & model_ok[:, w.class_set]
    usable = np.where(fits, total[:, None] - small[:, w.class_level], 0)
    return np.asarray(total * w.total_weight - (usable * weight).sum(axis=1), np.float64)


def _weight_with_room(w: Workload, host: IntArray) -> FloatArray:
    """(R, classes): per row, the weight of each class's kinds with the CPU and memory they
    need free. Where memory holds every kind, only CPU decides: the kinds of a class with
    at most the row's CPU are a prefix of the class sorted by CPU, summed by one search."""
    out = np.empty((len(host), len(w.class_gpus)))
    roomy = host[:, MEM] >= w.memory_max
    if roomy.any():
        end = np.searchsorted(w.cpu_keys, w.class_base[None, :] + host[roomy, :1], side="right")
        out[roomy] = w.cpu_cum[end] - w.class_cum[None, :]
    tight = ~roomy
    if tight.any():
        room = ((host[tight, :1] >= w.cpu_milli[None, :])
                & (host[tight, 1:2] >= w.memory_mib[None, :]))
        out[tight] = room.astype(np.float64) @ w.by_class
    return out


def whole_score(delta: FloatArray) -> FloatArray:
    """The paper's score of a change in fragmentation (thousandths): 100 times the sigmoid of
    its drop in GPUs, rounded down (near no change, nodes within about 0.04 GPU tie)."""
    # Rounded first to a millionth of a GPU: sums in another order must not cross a whole point.
    return np.floor(MAX_SCORE / (1.0 + np.exp(delta.round(3) / FULL)))  # the method: no wrapper


def _model_ok(w: Workload, cluster: Cluster, host: IntArray) -> BoolArray:
    """Per row: which of the workload's model sets allow the row's GPU model."""
    models = tuple(cluster.models)
    table = w.model_tables.get(models)
    if table is None:
        table = w.model_tables[models] = np.array(
            [[not s or name in s for s in w.sets] for name in models] or [[]],
            bool).reshape(max(len(models), 1), len(w.sets))
    return table[host[:, MODEL]]


@dataclass
class _Entry:
    """Per job shape: the fragmentation change by shape id (NaN: not yet computed), its
    whole-number score and, for a GPU share, the free share of the GPU it should take on that
    shape."""

    delta: FloatArray = field(default_factory=lambda: np.zeros(0))
    score: FloatArray = field(default_factory=lambda: np.zeros(0))
    share: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))


_SERIALS = itertools.count()


@dataclass
class _Cache:
    workload: Workload
    epoch: int
    serial: int = field(default_factory=lambda: next(_SERIALS))  # the plugin's shape_version
    seen: Workload | None = None  # the last workload found close to this one
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

    def __init__(self, workload: Workload | None, first_gpu: bool = False,
                 memory: bool = True, gpu_free_ties: bool = True) -> None:
        self.fixed = workload
        self.first_gpu = first_gpu
        self.memory = memory
        self.gpu_free_ties = gpu_free_ties
        self.cache: _Cache | None = None

    def _cache(self, state: CycleState, cluster: Cluster) -> _Cache:
        w = self.fixed or pending_workload(state, self.memory)
        c = self.cache
        if c is None or c.epoch != cluster.shapes.epoch or not (
                c.workload is w or c.seen is w or c.workload.close_to(w)):
            c = self.cache = _Cache(w, cluster.shapes.epoch)
        c.seen = w  # compared once: the rest of the cycle asks by identity
        return c

    def score(self, state: CycleState, job: Job, cluster: Cluster) -> FloatArray:
        # Scored once per free shape among the nodes, then spread to the nodes of each shape.
        ids, index = cluster.by_shape(state.candidates)
        return self.score_shapes(state, job, cluster, ids)[index]

    def score_shapes(self, state: CycleState, job: Job, cluster: Cluster, ids: IntArray
                     ) -> FloatArray:
        cache = self._cache(state, cluster)
        if len(cache.workload.weight) == 0:
            return np.full(len(ids), 100.0)
        scores = self._entry(cache, job, cluster, ids).score[ids]
        if job.gpus <= 0 and self.gpu_free_ties:
            # A task that asks for no GPU changes the fragmentation only where it makes some
            # kind stop fitting, so most nodes tie; among them, the least free GPU share.
            free = cluster.shapes.eff[ids].sum(axis=1) / FULL
            scores = scores + GPU_FREE_TIE / MAX_SCORE * fit_score(free)
        return scores

    def shape_version(self, state: CycleState, cluster: Cluster) -> int:
        """Scores change only when the cache starts over (a new workload or shape ids)."""
        return self._cache(state, cluster).serial

    def reserve(self, state: CycleState, job: Job, cluster: Cluster, node: int
                ) -> tuple[int, ...] | None:
        """For a GPU share: the GPU of ``node`` where the fragmentation grows least (computed
        with the node's score, kept by its shape). Whole GPUs: no preference."""
        cache = self._cache(state, cluster)
        if job.milli >= FULL or len(cache.workload.weight) == 0:
            return None
        ids = cluster.shape[[node]]
        if self.first_gpu:
            self._entry(cache, job, cluster, ids)
            return (self._paper_gpu(cache, job, cluster, node, int(ids[0])),)
        share = int(self._entry(cache, job, cluster, ids).share[ids[0]])
        return cluster.pick_gpus(node, job.gpus, job.milli, share)

    @staticmethod
    def _paper_gpu(cache: _Cache, job: Job, cluster: Cluster, node: int, sid: int) -> int:
        """The paper's GPU for a share: the first GPU of the node (in index order) whose
        whole-number score is the highest."""
        w = cache.workload
        row = cluster.eff[node].tolist()
        values = sorted({f for f in row if f >= job.milli})
        eff = cluster.shapes.eff[[sid]]
        host = cluster.shapes.host[[sid]].copy()
        host[:, CPU] -= job.cpu_milli
        host[:, MEM] -= job.memory_mib
        tried = np.repeat(eff, len(values), axis=0)
        for k, v in enumerate(values):
            tried[k, int(np.flatnonzero(eff[0] == v)[0])] -= job.milli
        frag = fragmentation(w, tried, np.repeat(host, len(values), axis=0),
                             np.repeat(_model_ok(w, cluster, cluster.shapes.host[[sid]]),
                                       len(values), axis=0))
        scores = whole_score(frag - cache.before[sid])
        good = {v for v, sc in zip(values, scores.tolist(), strict=True) if sc == scores.max()}
        return next(g for g, free in enumerate(row) if free in good)

    def _entry(self, cache: _Cache, job: Job, cluster: Cluster, ids: IntArray) -> _Entry:
        key = (job.gpus, job.milli, job.cpu_milli, job.memory_mib if self.memory else 0)
        entry = cache.entries.get(key)
        if entry is None:
            entry = cache.entries[key] = _Entry()
        size = len(cluster.shapes)
        if entry.score.shape[0] < size:
            entry.delta = _grown(entry.delta, size, np.nan)  # type: ignore[assignment]
            entry.score = _grown(entry.score, size, np.nan)  # type: ignore[assignment]
            entry.share = _grown(entry.share, size, -1)  # type: ignore[assignment]
        if cache.before.shape[0] < size:
            cache.before = _grown(cache.before, size, np.nan)  # type: ignore[assignment]
        todo = ids[np.isnan(entry.score[ids])]  # distinct: callers ask distinct shape ids
        if len(todo):
            self._compute(cache, entry, job, cluster.shapes, cluster, todo)
            entry.score[todo] = whole_score(entry.delta[todo])
        return entry

    @staticmethod
    def _compute(cache: _Cache, entry: _Entry, job: Job, shapes: ShapeTable, cluster: Cluster,
                 todo: IntArray) -> None:
        w = cache.workload
        eff, host = shapes.eff[todo], shapes.host[todo]
        ok = _model_ok(w, cluster, host)
        moved = host.copy()
        moved[:, CPU] -= job.cpu_milli
        moved[:, MEM] -= job.memory_mib
        if job.milli >= FULL:
            after = _after(cache, todo, eff, host, ok, _after_whole(job, eff), moved, ok)
            entry.delta[todo] = after - cache.before[todo]
            return
        # A share: try each distinct free value it fits on (rows are sorted high to low).
        entry.delta[todo] = eff.sum(axis=1)  # where it fits no GPU: all of it lost
        distinct = np.ones_like(eff, bool)
        distinct[:, 1:] = eff[:, 1:] != eff[:, :-1]
        row, col = np.nonzero((eff >= job.milli) & distinct)
        tried = eff[row].copy()
        tried[np.arange(len(row)), col] -= job.milli
        frag = _after(cache, todo, eff, host, ok, tried, moved[row], ok[row])
        # Least fragmentation per shape; on a tie the tightest GPU (the later column).
        order = np.lexsort((-col, frag, row))
        first = np.ones(len(order), bool)
        first[1:] = row[order][1:] != row[order][:-1]
        best = order[first]
        entry.delta[todo[row[best]]] = frag[best] - cache.before[todo[row[best]]]
        entry.share[todo[row[best]]] = eff[row[best], col[best]]


def _after(cache: _Cache, todo: IntArray, eff: IntArray, host: IntArray, ok: BoolArray,
           tried: IntArray, tried_host: IntArray, tried_ok: BoolArray) -> FloatArray:
    """The fragmentation of the ``tried`` rows; first, in the same call, that of the shapes
    ``todo`` (rows ``eff``, ``host``, ``ok``) not yet known, kept in ``cache.before``."""
    fresh = np.isnan(cache.before[todo])
    k = int(np.count_nonzero(fresh))
    if k == 0:
        return fragmentation(cache.workload, tried, tried_host, tried_ok)
    frag = fragmentation(cache.workload, np.concatenate((eff[fresh], tried)),
                         np.concatenate((host[fresh], tried_host)),
                         np.concatenate((ok[fresh], tried_ok)))
    cache.before[todo[fresh]] = frag[:k]
    return frag[k:]


def factory(args: PluginArgs) -> Fgd:
    return Fgd(workload_of(args.workload) if args.workload else None)


def paper_factory(args: PluginArgs) -> Fgd:
    """FGD as the paper's simulator has it: memory not looked at, and a share on the first GPU
    with the best whole-number score."""
    fgd = Fgd(workload_of(args.workload, memory=False) if args.workload else None,
              first_gpu=True, memory=False, gpu_free_ties=False)
    fgd.name = PAPER
    return fgd
