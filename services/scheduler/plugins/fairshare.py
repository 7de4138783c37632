"""Queue order by weighted fair share between tenants (dominant-resource fairness on GPUs).

A tenant's share is the GPU share it holds over its weight. Sorting by the share a tenant
*would* hold once this job and its earlier queued jobs run (progressive filling) interleaves
tenants in one sort: the tenant furthest below its fair share goes next.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from services.scheduler.cluster import Cluster
from services.scheduler.framework import CycleState, FloatArray, PluginArgs
from services.scheduler.jobs import Job

NAME = "fairshare"


def projected_shares(state: CycleState, jobs: list[Job], weights: Mapping[str, float]
                     ) -> FloatArray:
    """Per job of ``jobs``: (its tenant's held share + the tenant's demand among ``jobs`` up to
    and including this job, in arrival order) / the tenant's weight."""
    n = len(jobs)
    if n == 0:
        return np.zeros(0)
    tenants: dict[str, int] = {}
    code = np.fromiter([tenants.setdefault(j.tenant, len(tenants)) for j in jobs], np.int64, n)
    demand = np.fromiter([j.gang * j.gpus * j.milli for j in jobs], np.int64, n)
    seq = np.fromiter([j.seq for j in jobs], np.int64, n)
    names = list(tenants)
    held = np.array([state.tenant_used.get(t, 0) for t in names], np.int64)
    weight = np.array([max(weights.get(t, 1.0), 1e-9) for t in names])
    # A running sum per tenant in arrival order: sorted by tenant, then by arrival, each
    # tenant's run less the sum before its first job.
    order = np.lexsort((seq, code))
    tenant, asked = code[order], demand[order]
    total = np.cumsum(asked)
    starts = np.flatnonzero(np.r_[True, tenant[1:] != tenant[:-1]])
    before = np.repeat(total[starts] - asked[starts], np.diff(np.r_[starts, n]))
    out = np.empty(n)
    out[order] = (held[tenant] + total - before) / max(state.capacity_milli, 1) / weight[tenant]
    return out


class FairShare:
    name = NAME

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = dict(weights)

    def keys(self, state: CycleState, jobs: list[Job], cluster: Cluster) -> FloatArray:
        return projected_shares(state, jobs, self.weights)


def factory(args: PluginArgs) -> FairShare:
    return FairShare(args.weights)
