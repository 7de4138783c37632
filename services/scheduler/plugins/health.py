"""Filter: only online nodes with at least one healthy GPU (lost and unhealthy GPUs are never
placed on; ``Cluster.eff`` already gives them no free share)."""

from __future__ import annotations

import numpy as np

from services.scheduler.cluster import USABLE, BoolArray, Cluster, IntArray
from services.scheduler.framework import SUCCESS, CycleState, PluginArgs, Status, unschedulable
from services.scheduler.jobs import Job

NAME = "health"


class Health:
    name = NAME

    def filter(self, state: CycleState, job: Job, cluster: Cluster) -> tuple[BoolArray, Status]:
        n = cluster.n_nodes
        mask = cluster.usable_nodes()
        if (mask & state.feasible).any():
            return mask, SUCCESS
        if n == 0:
            return mask, unschedulable(NAME, "no GPU nodes are known yet; waiting for inventory")
        return mask, unschedulable(NAME, (
            f"all {int(state.feasible.sum())} candidate nodes are offline or have no healthy "
            "GPU; bring a node back or replace its GPUs"))

    def fits_shapes(self, job: Job, cluster: Cluster, ids: IntArray) -> BoolArray:
        return np.asarray(cluster.shapes.host[ids, USABLE] == 1)


def factory(args: PluginArgs) -> Health:
    return Health()
