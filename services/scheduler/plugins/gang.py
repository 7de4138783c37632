"""Gang scheduling: all members of a job are placed together or none is.

The pre-filter counts how many members the free room could hold now and stops early when it
is fewer than the gang; the permit checks that every member got a node (the pipeline gives
back the members already placed when it does not).
"""

from __future__ import annotations

import numpy as np

from services.scheduler.cluster import Cluster, IntArray
from services.scheduler.framework import SUCCESS, CycleState, PluginArgs, Status, unschedulable
from services.scheduler.jobs import FULL, Job

NAME = "gang"


def members_that_fit(job: Job, cluster: Cluster) -> IntArray:
    """Per node: how many members of ``job`` its free room holds."""
    n = cluster.n_nodes
    if job.milli < FULL:
        per_node = (cluster.eff[:n] // job.milli).sum(axis=1)
    else:
        per_node = cluster.whole[:n] // job.gpus
    for free, need in ((cluster.cpu_free[:n], job.cpu_milli),
                       (cluster.mem_free[:n], job.memory_mib)):
        if need > 0:
            per_node = np.minimum(per_node, free // need)
    ok = cluster.online[:n] & cluster.model_mask(job.models)
    return np.where(ok, per_node, 0)


class Gang:
    name = NAME

    def pre_filter(self, state: CycleState, job: Job, cluster: Cluster) -> Status:
        if job.gang == 1:
            return SUCCESS
        room = int(members_that_fit(job, cluster).sum())
        if room >= job.gang:
            return SUCCESS
        return unschedulable(NAME, (
            f"needs {job.describe()} placed together; the free room holds {room} "
            f"member(s) now (all or none)"))

    def permit(self, state: CycleState, job: Job, cluster: Cluster) -> Status:
        if len(state.members) == job.gang:
            return SUCCESS
        return unschedulable(NAME, (
            f"only {len(state.members)} of {job.gang} gang members could be placed "
            "(all or none)"))


def factory(args: PluginArgs) -> Gang:
    return Gang()
