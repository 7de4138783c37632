"""Score: random (the baseline). Uses the cycle's seeded generator, so runs repeat."""

from __future__ import annotations

from services.scheduler.cluster import Cluster
from services.scheduler.framework import CycleState, FloatArray, PluginArgs
from services.scheduler.jobs import Job

NAME = "random"


class Random:
    name = NAME

    def score(self, state: CycleState, job: Job, cluster: Cluster) -> FloatArray:
        return state.rng.uniform(0.0, 100.0, size=len(state.candidates))


def factory(args: PluginArgs) -> Random:
    return Random()
