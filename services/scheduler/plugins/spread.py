"""Score: spread. The node with the most free GPU share scores highest (least interference,
most headroom per job)."""

from __future__ import annotations

import numpy as np

from services.scheduler.cluster import Cluster
from services.scheduler.framework import CycleState, FloatArray, PluginArgs, normalize
from services.scheduler.jobs import Job

NAME = "spread"


class Spread:
    name = NAME

    def score(self, state: CycleState, job: Job, cluster: Cluster) -> FloatArray:
        free = cluster.free_total[state.candidates].astype(np.float64)
        return normalize(free, higher_is_better=True)


def factory(args: PluginArgs) -> Spread:
    return Spread()
