"""Score: keep CPU for the free GPUs. A GPU whose node has no CPU left is lost to every job
that needs one, however well its share would fit. A node scores 100 when, once the member
lands, it keeps at least ``CORES_PER_FREE_GPU`` cores for each GPU that can still take a task
(one with at least ``ROOM`` of its share free: a task on a part of a GPU asks for CPU as one on
a whole GPU does), or has no such GPU; less in proportion to how short of that it falls.

With a weight above FGD's (``fgd,balance:4``), FGD chooses among the nodes that keep CPU for
their GPUs, and a node that would strand its GPUs is taken only when no other fits. The
Kubernetes scheduler's ``NodeResourcesBalancedAllocation`` plays the same part between CPU
and memory.

``CORES_PER_FREE_GPU`` was chosen by measurement on the Alibaba 2023 trace (its GPU tasks ask
for 10.9 cores per GPU on average; 8 to 9 kept here placed most, 10 or more, or 6 or fewer,
less: ``docs/scheduler.md``). Where CPU is what runs short (twice the CPU-only tasks), keeping
it for GPUs costs more than it saves.
"""

from __future__ import annotations

import numpy as np

from services.scheduler.cluster import CPU, Cluster, IntArray
from services.scheduler.framework import MAX_SCORE, CycleState, FloatArray, PluginArgs
from services.scheduler.jobs import FULL, Job
from services.scheduler.plugins.bestfit import tightest

NAME = "balance"
CORES_PER_FREE_GPU = 8.5
ROOM = 200  # a GPU with this much share free (thousandths) can still take a task


def balance_shapes(job: Job, cluster: Cluster, ids: IntArray) -> FloatArray:
    """0..100 for a node of each shape in ``ids``: the cores it keeps per GPU with room left
    once the member lands, over ``CORES_PER_FREE_GPU`` (at most 1), times 100; 100 when no GPU
    has room. A share is taken to land on the tightest GPU it fits (as best fit has it)."""
    eff = cluster.shapes.eff[ids]
    room = (eff >= ROOM).sum(axis=1)
    if job.milli >= FULL:
        room = room - job.gpus
    elif job.gpus:
        tight = tightest(eff, job.milli)
        room = room - ((tight >= ROOM) & (tight - job.milli < ROOM))
    cpu_left = np.maximum(cluster.shapes.host[ids, CPU] - job.cpu_milli, 0) / 1000
    kept = np.minimum(cpu_left / np.maximum(CORES_PER_FREE_GPU * room, 1e-9), 1.0)
    return np.asarray(MAX_SCORE * np.where(room > 0, kept, 1.0), np.float64)


class Balance:
    name = NAME

    def score(self, state: CycleState, job: Job, cluster: Cluster) -> FloatArray:
        distinct, index = cluster.by_shape(state.candidates)
        return balance_shapes(job, cluster, distinct)[index]

    def score_shapes(self, state: CycleState, job: Job, cluster: Cluster, ids: IntArray
                     ) -> FloatArray:
        return balance_shapes(job, cluster, ids)

    def shape_version(self, state: CycleState, cluster: Cluster) -> None:
        return None


def factory(args: PluginArgs) -> Balance:
    return Balance()
