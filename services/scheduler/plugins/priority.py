"""Queue order by priority class: higher priority first."""

from __future__ import annotations

import numpy as np

from services.scheduler.cluster import Cluster
from services.scheduler.framework import CycleState, FloatArray, PluginArgs
from services.scheduler.jobs import Job

NAME = "priority"


class Priority:
    name = NAME

    def keys(self, state: CycleState, jobs: list[Job], cluster: Cluster) -> FloatArray:
        return -np.fromiter([j.priority for j in jobs], np.float64, len(jobs))


def factory(args: PluginArgs) -> Priority:
    return Priority()
