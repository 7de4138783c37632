"""Score: keep CPU for the free GPUs. A GPU whose node has no CPU left is lost to every job
that needs one, however well its share would fit. A node scores 100 when, once the member
lands, it keeps at least ``CORES_PER_FREE_GPU`` cores for each GPU it still has free (or has
no GPU free), and less in proportion to how short of that it falls.

With a weight above FGD's (``fgd,balance:4``), FGD chooses among the nodes that keep CPU for
their GPUs, and a node that would strand its GPUs is taken only when no other fits. The
Kubernetes scheduler's ``NodeResourcesBalancedAllocation`` plays the same part between CPU
and memory.

``CORES_PER_FREE_GPU`` was chosen by measurement on the Alibaba 2023 trace (its GPU tasks ask
for 10.9 cores per GPU on average; 8 or 9 kept here placed most, 10 or more, or 6 or fewer,
less: ``docs/scheduler.md``). Where CPU is what runs short (twice the CPU-only tasks), keeping
it for GPUs costs more than it saves.
"""

from __future__ import annotations

import numpy as np

from services.scheduler.cluster import CPU, Cluster, IntArray
from services.scheduler.framework import MAX_SCORE, CycleState, FloatArray, PluginArgs
from services.scheduler.jobs import FULL, Job

NAME = "balance"
CORES_PER_FREE_GPU = 9.0


def balance_shapes(job: Job, cluster: Cluster, ids: IntArray,
                   cores: float = CORES_PER_FREE_GPU) -> FloatArray:
    """0..100 for a node of each shape in ``ids``: the cores it keeps per free GPU once the
    member lands, over ``cores`` (at most 1), times 100; 100 when no GPU is left free."""
    shapes = cluster.shapes
    gpus_left = (shapes.eff[ids].sum(axis=1) - job.gpus * job.milli) / FULL
    cpu_left = np.maximum(shapes.host[ids, CPU] - job.cpu_milli, 0) / 1000
    kept = np.minimum(cpu_left / np.maximum(cores * gpus_left, 1e-9), 1.0)
    return np.asarray(MAX_SCORE * np.where(gpus_left > 0, kept, 1.0), np.float64)


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
