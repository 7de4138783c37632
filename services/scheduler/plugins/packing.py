"""Score: GPU packing. Put a share on a GPU that is already partly used, then on a node that
already runs something, and only then open an idle node (the paper's GpuPacking)."""

from __future__ import annotations

import numpy as np

from services.scheduler.cluster import Cluster
from services.scheduler.framework import CycleState, FloatArray, PluginArgs
from services.scheduler.jobs import FULL, Job

NAME = "packing"


class Packing:
    name = NAME

    def score(self, state: CycleState, job: Job, cluster: Cluster) -> FloatArray:
        nodes = state.candidates
        eff = cluster.eff[nodes]
        capacity = (cluster.exists[nodes] & cluster.healthy[nodes]).sum(axis=1) * FULL
        in_use = cluster.free_total[nodes] < capacity
        raw = np.where(in_use, 50.0, 0.0)
        if job.milli < FULL:
            partial_fit = ((eff >= job.milli) & (eff < FULL)).any(axis=1)
            raw += np.where(partial_fit, 50.0, 0.0)
        return raw


def factory(args: PluginArgs) -> Packing:
    return Packing()
