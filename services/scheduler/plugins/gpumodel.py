"""Filter: only nodes whose GPU model is one the job allows."""

from __future__ import annotations

import numpy as np

from services.scheduler.cluster import MODEL, BoolArray, Cluster, IntArray
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

    def fits_shapes(self, job: Job, cluster: Cluster, ids: IntArray) -> BoolArray:
        if not job.models:
            return np.ones(len(ids), bool)
        allowed = [i for i, m in enumerate(cluster.models) if m in job.models]
        return np.isin(cluster.shapes.host[ids, MODEL], allowed)


def factory(args: PluginArgs) -> GpuModel:
    return GpuModel()
