"""Filter: only nodes whose GPU model is one the job allows."""

from __future__ import annotations

from services.scheduler.cluster import BoolArray, Cluster
from services.scheduler.framework import SUCCESS, CycleState, PluginArgs, Status, unschedulable
from services.scheduler.jobs import Job

NAME = "gpumodel"


class GpuModel:
    name = NAME

    def filter(self, state: CycleState, job: Job, cluster: Cluster) -> tuple[BoolArray, Status]:
        mask = cluster.model_mask(job.models)
        if (mask & state.feasible).any():
            return mask, SUCCESS
        have = ", ".join(sorted(set(cluster.models))) or "none"
        return mask, unschedulable(NAME, (
            f"needs GPU model {' or '.join(job.models)}; no usable node has it "
            f"(models here: {have})"))


def factory(args: PluginArgs) -> GpuModel:
    return GpuModel()
