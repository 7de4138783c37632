"""Filter: nodes whose GPUs that are not drained can still hold a member of the job.

Drained GPUs (``gpu.drains``, see ``services/scheduler/measured.py``) take no new placements.
The scheduler core marks them unhealthy in its model (``Drains.apply``), so no GPU is ever
picked on them; this filter says so in the job's reason when drains are what keeps it waiting.
"""

from __future__ import annotations

import numpy as np

from services.scheduler.cluster import BoolArray, Cluster
from services.scheduler.framework import SUCCESS, CycleState, PluginArgs, Status, unschedulable
from services.scheduler.jobs import Job
from services.scheduler.measured import DRAINS, Drains

NAME = "drained"


class Drained:
    name = NAME

    def filter(self, state: CycleState, job: Job, cluster: Cluster) -> tuple[BoolArray, Status]:
        drains: Drains | None = state.memo.get(DRAINS)
        mask = np.ones(cluster.n_nodes, bool)
        if drains is None or not drains.gpus:
            return mask, SUCCESS
        reasons: list[str] = []
        for n in np.flatnonzero(state.feasible).tolist():
            drained = drains.on_node(cluster.names[n])
            if not drained:
                continue
            row = cluster.eff[n].copy()
            row[list(drained)] = 0
            if int((row >= job.milli).sum()) < job.gpus:
                mask[n] = False
                reasons += [f"GPU {g} on {cluster.names[n]}: {why}" for g, why in drained.items()]
        if (mask & state.feasible).any() or not reasons:
            return mask, SUCCESS
        return mask, unschedulable(NAME, "the GPUs that would fit are drained: "
                                   + "; ".join(sorted(reasons)[:5]))


def factory(args: PluginArgs) -> Drained:
    del args
    return Drained()
