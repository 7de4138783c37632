"""Score: for a job that shares a GPU, prefer nodes where the GPU it would get has measured
headroom, not only free allocated share.

The GPU a share lands on is the one ``Cluster.pick_gpus`` picks (the fullest it fits on). Its
headroom is ``100 - p95 utilization``, lowered by the memory in use: ``min(100 - util_p95,
100 * (1 - mem_frac))``, from the latest window of ``gpu.util`` (``CycleState.memo``, see
``services/scheduler/measured.py``). Without a recent window the allocated share stands in for
the load (a GPU half given out counts as 50 % busy). Whole-GPU jobs get 100 everywhere: a free
whole GPU has no owner whose load could collide.
"""

from __future__ import annotations

import numpy as np

from services.scheduler.cluster import Cluster
from services.scheduler.framework import MAX_SCORE, CycleState, FloatArray, PluginArgs
from services.scheduler.jobs import FULL, Job
from services.scheduler.measured import MEASURED, MeasuredLoad

NAME = "loadaware"


class LoadAware:
    name = NAME

    def score(self, state: CycleState, job: Job, cluster: Cluster) -> FloatArray:
        out = np.full(state.candidates.shape, MAX_SCORE)
        if job.milli >= FULL:
            return out
        measured = state.memo.get(MEASURED)
        for i, n in enumerate(state.candidates.tolist()):
            out[i] = headroom(cluster, int(n), job.milli, measured, state.now)
        return out


def headroom(cluster: Cluster, n: int, milli: int, measured: MeasuredLoad | None,
             now: float) -> float:
    """0..100: what is left on the GPU of node ``n`` that a share of ``milli`` would take."""
    row = cluster.eff[n]
    if not (row >= milli).any():
        return 0.0
    gpu = cluster.pick_gpus(n, 1, milli)[0]
    load = measured.load(cluster.names[n], gpu, now) if measured is not None else None
    if load is None:
        return float(MAX_SCORE * (1 - cluster.used[n, gpu] / FULL))
    util_room = MAX_SCORE - min(MAX_SCORE, max(0.0, load.util_p95))
    mem_room = MAX_SCORE * (1 - load.mem_frac)
    return float(max(0.0, min(util_room, mem_room)))


def factory(args: PluginArgs) -> LoadAware:
    del args
    return LoadAware()
