"""Queue order by priority class: higher priority first."""

from __future__ import annotations

from services.scheduler.cluster import Cluster
from services.scheduler.framework import CycleState, PluginArgs
from services.scheduler.jobs import Job

NAME = "priority"


class Priority:
    name = NAME

    def key(self, state: CycleState, job: Job, cluster: Cluster) -> float:
        return float(-job.priority)


def factory(args: PluginArgs) -> Priority:
    return Priority()
