"""Quotas with borrowing: a tenant may use up to its GPU quota; above it, only idle capacity,
and what it borrows can be taken back (preemption treats borrowed jobs as victims).

Queue order puts jobs within quota before borrowing ones; the pre-filter refuses a job over
quota when borrowing is off, and marks the attempt as borrowing when it is on.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from services.scheduler.cluster import Cluster
from services.scheduler.framework import (
    SUCCESS,
    CycleState,
    FloatArray,
    PluginArgs,
    Status,
    unschedulable,
)
from services.scheduler.jobs import FULL, Job

NAME = "quota"


def over_quota(job: Job, used_milli: int, quota_gpus: float | None) -> bool:
    return quota_gpus is not None and used_milli + job.demand_milli > quota_gpus * FULL


class Quota:
    name = NAME

    def __init__(self, quotas: Mapping[str, float], borrowing: bool) -> None:
        self.quotas = dict(quotas)
        self.borrowing = borrowing

    def keys(self, state: CycleState, jobs: list[Job], cluster: Cluster) -> FloatArray:
        """1 for a job over its tenant's quota (it would borrow), else 0."""
        if not self.quotas:
            return np.zeros(len(jobs))
        used, quotas = state.tenant_used, self.quotas
        return np.fromiter([over_quota(j, used.get(j.tenant, 0), quotas.get(j.tenant))
                            for j in jobs], np.float64, len(jobs))

    def pre_filter(self, state: CycleState, job: Job, cluster: Cluster) -> Status:
        quota = self.quotas.get(job.tenant)
        used = state.tenant_used.get(job.tenant, 0)
        if not over_quota(job, used, quota):
            return SUCCESS
        if self.borrowing:
            state.borrowing = True
            return SUCCESS
        return unschedulable(NAME, (
            f"tenant {job.tenant} is at its quota of {quota:g} GPUs (holds {used / FULL:g}, "
            f"the job needs {job.demand_milli / FULL:g}); wait for its jobs to finish or "
            f"raise the quota"))


def factory(args: PluginArgs) -> Quota:
    return Quota(args.quotas, args.borrowing)
