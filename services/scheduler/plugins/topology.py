"""Score: topology. Gang members go to as few nodes as possible (nodes already holding a member
of this job score highest), a multi-GPU member goes where it fits inside one NVLink domain,
and, among nodes otherwise equal, the node whose free GPUs it fills most exactly (big blocks
stay whole; best fit's score of the whole GPUs left). That last part stays under one point, so
it only breaks ties: FGD's whole-number score weighs the same question for the whole workload,
and a larger term would overrule it."""

from __future__ import annotations

import numpy as np

from services.scheduler.cluster import BLOCK, WHOLE, Cluster, IntArray
from services.scheduler.framework import CycleState, FloatArray, PluginArgs, fit_score
from services.scheduler.jobs import FULL, Job

NAME = "topology"
TIE_BREAK = 0.009  # of a 0..100 score: under one point


class Topology:
    name = NAME

    def score(self, state: CycleState, job: Job, cluster: Cluster) -> FloatArray:
        nodes = state.candidates
        ids, index = cluster.by_shape(nodes)
        raw = self.score_shapes(state, job, cluster, ids)[index]
        if state.members and not (job.milli < FULL and job.gang == 1):
            raw = raw + np.where(np.isin(nodes, [s.node for s in state.members]), 50.0, 0.0)
        return raw

    def score_shapes(self, state: CycleState, job: Job, cluster: Cluster, ids: IntArray
                     ) -> FloatArray:
        """The score but for nodes already holding a member (``score`` adds that): each
        shape's block and whole free GPUs are its nodes' ``Cluster.block`` and
        ``Cluster.whole``."""
        if job.milli < FULL and job.gang == 1:
            return np.full(len(ids), 100.0)
        raw = np.zeros(len(ids))
        host = cluster.shapes.host[ids]
        if job.gpus > 1:
            raw += np.where(host[:, BLOCK] >= job.gpus, 30.0, 0.0)
        raw += TIE_BREAK * fit_score((host[:, WHOLE] - job.gpus).astype(np.float64))
        return raw

    def shape_version(self, state: CycleState, cluster: Cluster) -> None:
        return None


def factory(args: PluginArgs) -> Topology:
    return Topology()
