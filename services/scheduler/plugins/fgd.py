"""Score: fragmentation gradient descent (FGD, USENIX ATC'23, "Beware of Fragmentation").

The fragmentation of a node, seen by one kind of task, is the free GPU share that task could
not use there: all of it when the task does not fit on the node at all, else the free share
of each GPU too small for the task's per-GPU share. The node's fragmentation is the mean over
the workload's task kinds, weighted by how common each is. FGD puts a member where the
fragmentation grows least.

The workload is the plugin's typical jobs when given (the simulator passes the trace's), else
the jobs pending in this cycle.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from services.scheduler.cluster import BoolArray, Cluster, IntArray
from services.scheduler.framework import CycleState, FloatArray, PluginArgs, normalize
from services.scheduler.jobs import FULL, Job

NAME = "fgd"
GPU_CHOICE = "gpu_choice"  # scratch key: node -> the GPU a share should take there
MAX_KINDS = 32
# Random odd multipliers: a row's state hashes to one int64 (wrapping), to find equal states.
_HASH = np.random.default_rng(7).integers(1, 1 << 62, size=1024, dtype=np.int64) | 1


@dataclass(frozen=True)
class Workload:
    """Task kinds: ``k`` GPUs of ``m`` thousandths each, ``c`` CPU, ``mem`` MiB, weight ``p``."""

    k: IntArray
    m: IntArray
    c: IntArray
    mem: IntArray
    p: FloatArray
    models: tuple[tuple[str, ...], ...]


def workload_of(jobs: Iterable[tuple[Job, float]]) -> Workload:
    """Group jobs into kinds by (GPUs, share, models); CPU and memory are the kind's means.
    The ``MAX_KINDS`` most common kinds are kept."""
    acc: dict[tuple[int, int, tuple[str, ...]], list[float]] = defaultdict(lambda: [0.0] * 3)
    for job, weight in jobs:
        if job.gpus <= 0 or job.milli <= 0:
            continue
        a = acc[(job.gpus, job.milli, job.models)]
        a[0] += weight
        a[1] += weight * job.cpu_milli
        a[2] += weight * job.memory_mib
    kinds = sorted(acc.items(), key=lambda kv: -kv[1][0])[:MAX_KINDS]
    total = sum(v[0] for _, v in kinds) or 1.0
    return Workload(
        k=np.array([k[0] for k, _ in kinds], np.int64),
        m=np.array([k[1] for k, _ in kinds], np.int64),
        c=np.array([v[1] / max(v[0], 1e-12) for _, v in kinds], np.int64),
        mem=np.array([v[2] / max(v[0], 1e-12) for _, v in kinds], np.int64),
        p=np.array([v[0] / total for _, v in kinds], np.float64),
        models=tuple(k[2] for k, _ in kinds),
    )


def fragmentation(w: Workload, rows: IntArray, cpu: IntArray, mem: IntArray,
                  model_ok: BoolArray) -> FloatArray:
    """Expected unusable GPU share (thousandths) of each row of free shares ``rows`` (F, G);
    ``model_ok`` (F, T) says which node may run which kind."""
    share = rows[:, None, :]
    big_enough = share >= w.m[None, :, None]
    fits = ((big_enough.sum(axis=2) >= w.k[None, :]) & (cpu[:, None] >= w.c[None, :])
            & (mem[:, None] >= w.mem[None, :]) & model_ok)
    too_small = np.where(big_enough, 0, share).sum(axis=2)
    frag = np.where(fits, too_small, rows.sum(axis=1)[:, None])
    return np.asarray(frag @ w.p, dtype=np.float64)


def after_member(job: Job, rows: IntArray) -> IntArray:
    """Free shares once a member lands (best-fit GPU for a share, free GPUs for whole ones)."""
    out = rows.copy()
    if job.milli < FULL:
        cand = np.where(out >= job.milli, out, FULL + 1)
        out[np.arange(len(out)), cand.argmin(axis=1)] -= job.milli
    else:
        full = out == FULL
        out[full & (np.cumsum(full, axis=1) <= job.gpus)] = 0
    return out


class Fgd:
    name = NAME

    def __init__(self, workload: Workload | None) -> None:
        self.workload = workload

    def _workload(self, state: CycleState) -> Workload:
        if self.workload is not None:
            return self.workload
        w = state.memo.get(NAME)
        if w is None:
            w = state.memo[NAME] = workload_of((j, 1.0) for j in state.pending)
        return w

    def score(self, state: CycleState, job: Job, cluster: Cluster) -> FloatArray:
        w = self._workload(state)
        nodes = state.candidates
        if len(w.p) == 0:
            return np.full(len(nodes), 100.0)
        # Nodes in the same state score the same: compute each distinct state once.
        rows = cluster.eff[nodes]
        cpu = cluster.cpu_total[nodes] - cluster.cpu_used[nodes]
        mem = cluster.mem_total[nodes] - cluster.mem_used[nodes]
        keys = np.column_stack([rows, cpu, mem, cluster.model[nodes]]) @ _HASH[: rows.shape[1] + 3]
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        u_rows, u_cpu, u_mem, u_nodes = rows[first], cpu[first], mem[first], nodes[first]
        if any(w.models):
            model_ok = np.stack([cluster.model_mask(m)[u_nodes] for m in w.models], axis=1)
        else:
            model_ok = np.ones((len(u_nodes), len(w.models)), bool)
        before = fragmentation(w, u_rows, u_cpu, u_mem, model_ok)
        if job.milli < FULL:
            after, gpu = self._best_gpu(w, job, u_rows, u_cpu, u_mem, model_ok)
            state.scratch[GPU_CHOICE] = dict(zip(nodes.tolist(), gpu[inverse.ravel()].tolist(),
                                                 strict=True))
        else:
            after = fragmentation(w, after_member(job, u_rows), u_cpu - job.cpu_milli,
                                  u_mem - job.memory_mib, model_ok)
        return normalize((after - before)[inverse.ravel()], higher_is_better=False)

    @staticmethod
    def _best_gpu(w: Workload, job: Job, rows: IntArray, cpu: IntArray, mem: IntArray,
                  model_ok: BoolArray) -> tuple[FloatArray, IntArray]:
        """For a share: the fragmentation after it lands on each GPU that fits; the least."""
        f, g = rows.shape
        moved = np.repeat(rows, g, axis=0)  # row i*g + col: the share put on GPU col
        cols = np.tile(np.arange(g), f)
        fit = moved[np.arange(f * g), cols] >= job.milli
        moved[np.arange(f * g), cols] -= job.milli
        frag = fragmentation(w, moved[fit], np.repeat(cpu, g)[fit] - job.cpu_milli,
                             np.repeat(mem, g)[fit] - job.memory_mib,
                             np.repeat(model_ok, g, axis=0)[fit])
        table = np.full(f * g, np.inf)
        table[fit] = frag
        table = table.reshape(f, g)
        gpu = table.argmin(axis=1)
        return table[np.arange(f), gpu], gpu


def factory(args: PluginArgs) -> Fgd:
    return Fgd(workload_of(args.workload) if args.workload else None)
