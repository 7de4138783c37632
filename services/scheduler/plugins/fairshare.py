"""Queue order by weighted fair share between tenants (dominant-resource fairness on GPUs).

A tenant's share is the GPU share it holds over its weight. Sorting by the share a tenant
*would* hold once this job and its earlier queued jobs run (progressive filling) interleaves
tenants in one sort: the tenant furthest below its fair share goes next.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

from services.scheduler.cluster import Cluster
from services.scheduler.framework import CycleState, PluginArgs
from services.scheduler.jobs import Job

NAME = "fairshare"
SEQ = operator.attrgetter("seq")


def projected_shares(state: CycleState, weights: Mapping[str, float]) -> dict[str, float]:
    """job id -> (tenant's held share + its queued demand up to and including the job) / weight."""
    capacity = max(state.capacity_milli, 1)
    cumulative = dict(state.tenant_used)
    weight = {t: max(weights.get(t, 1.0), 1e-9) for t in {j.tenant for j in state.pending}}
    out: dict[str, float] = {}
    for job in sorted(state.pending, key=SEQ):
        tenant = job.tenant
        held = cumulative.get(tenant, 0) + job.gang * job.gpus * job.milli  # demand_milli
        cumulative[tenant] = held
        out[job.job_id] = held / capacity / weight[tenant]
    return out


class FairShare:
    name = NAME

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = dict(weights)

    def key(self, state: CycleState, job: Job, cluster: Cluster) -> float:
        shares = state.memo.get(NAME)
        if shares is None:
            shares = state.memo[NAME] = projected_shares(state, self.weights)
        return float(shares.get(job.job_id, 0.0))


def factory(args: PluginArgs) -> FairShare:
    return FairShare(args.weights)
