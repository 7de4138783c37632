"""Filter: nodes whose GPUs that are not drained can still hold a member of the job.

Drained GPUs (``gpu.drains``, see ``services/scheduler/measured.py``) take no new placements.
The scheduler core marks them unhealthy in its model (``Drains.apply``), so no GPU is ever
picked on them; this filter says so in the job's reason when drains are what keeps it waiting.

It is also the loop plugin of drains (``services/scheduler/loop.py``): with it in the profile a
``GpuDrain`` marks its GPU and stops and requeues the jobs running on it ("moved off a drained
GPU: XID 79 ..."), and a ``GpuUndrain`` gives the GPU back; without it drains change nothing.
"""

from __future__ import annotations

import numpy as np

from gpufleet.contracts import GpuDrain
from services.scheduler.cluster import BoolArray, Cluster
from services.scheduler.framework import SUCCESS, CycleState, PluginArgs, Status, unschedulable
from services.scheduler.jobs import Job
from services.scheduler.loop import Decision, LoopView
from services.scheduler.loopstops import drain_stops
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
        for name, drained in drains.by_node().items():  # the drained nodes only
            n = cluster.index.get(name)
            if n is None or not state.feasible[n]:
                continue
            row = cluster.eff[n].copy()
            # a drain may name a GPU the node does not have (its message is only bounded by
            # the widest node): nothing to take off for it
            row[[g for g in drained if g < row.shape[0]]] = 0
            if int((row >= job.milli).sum()) < job.gpus:
                mask[n] = False
                reasons += [f"GPU {g} on {cluster.names[n]}: {why}" for g, why in drained.items()]
        if (mask & state.feasible).any() or not reasons:
            return mask, SUCCESS
        return mask, unschedulable(NAME, "the GPUs that would fit are drained: "
                                   + "; ".join(sorted(reasons)[:5]))

    def filters_drained(self) -> bool:
        return True

    def react(self, msg: object, view: LoopView) -> list[Decision]:
        if not isinstance(msg, GpuDrain):
            return []
        return list(drain_stops(msg, view.running, view.names))


def factory(args: PluginArgs) -> Drained:
    del args
    return Drained()
