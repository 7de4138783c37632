"""Quotas with borrowing: a tenant may use up to its GPU quota; above it, only idle capacity,
and what it borrows can be taken back (preemption treats borrowed jobs as victims).

Queue order puts jobs within quota before borrowing ones; the pre-filter refuses a job over
quota when borrowing is off, and marks the attempt as borrowing when it is on.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.scheduler.cluster import Cluster
from services.scheduler.framework import SUCCESS, CycleState, PluginArgs, Status, unschedulable
from services.scheduler.jobs import FULL, Job

NAME = "quota"


def over_quota(job: Job, used_milli: int, quota_gpus: float | None) -> bool:
    return quota_gpus is not None and used_milli + job.demand_milli > quota_gpus * FULL


class Quota:
    name = NAME

    def __init__(self, quotas: Mapping[str, float], borrowing: bool) -> None:
        self.quotas = dict(quotas)
        self.borrowing = borrowing

    def key(self, state: CycleState, job: Job, cluster: Cluster) -> float:
        used = state.tenant_used.get(job.tenant, 0)
        return 1.0 if over_quota(job, used, self.quotas.get(job.tenant)) else 0.0

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
