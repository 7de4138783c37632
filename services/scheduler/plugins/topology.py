"""Score: topology. Gang members go to as few nodes as possible (nodes already holding a member
of this job score highest), a multi-GPU member goes where it fits inside one NVLink domain,
and the node whose free block it fills most exactly is preferred (big blocks stay whole)."""

from __future__ import annotations

import numpy as np

from services.scheduler.cluster import Cluster, IntArray
from services.scheduler.framework import CycleState, FloatArray, PluginArgs, normalize
from services.scheduler.jobs import FULL, Job

NAME = "topology"


def largest_domain_block(cluster: Cluster, nodes: IntArray) -> IntArray:
    """Per node: the most fully free GPUs inside one NVLink domain (kept by the cluster)."""
    return cluster.block[nodes]


class Topology:
    name = NAME

    def score(self, state: CycleState, job: Job, cluster: Cluster) -> FloatArray:
        nodes = state.candidates
        if job.milli < FULL and job.gang == 1:
            return np.full(len(nodes), 100.0)
        raw = np.zeros(len(nodes))
        if state.members:
            holding = np.isin(nodes, [s.node for s in state.members])
            raw += np.where(holding, 50.0, 0.0)
        if job.gpus > 1:
            raw += np.where(largest_domain_block(cluster, nodes) >= job.gpus, 30.0, 0.0)
        spare = (cluster.whole[nodes] - job.gpus).astype(np.float64)
        raw += 0.2 * normalize(spare, higher_is_better=False)
        return raw


def factory(args: PluginArgs) -> Topology:
    return Topology()
