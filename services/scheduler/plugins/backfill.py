"""Backfill with a reservation (EASY backfill).

When a job is blocked, the post-filter finds when it could start, from the estimated ends of
the running jobs, and reserves the nodes it would get then. For the rest of the cycle, the
filter keeps other jobs off those nodes unless their own estimated runtime ends before the
reserved start, so small jobs run ahead without delaying the blocked one.
"""

from __future__ import annotations

import heapq

import numpy as np

from services.scheduler.cluster import BoolArray, Cluster, Slot
from services.scheduler.framework import (
    SUCCESS,
    Code,
    CycleState,
    PluginArgs,
    Reservation,
    Status,
    unschedulable,
)
from services.scheduler.jobs import Job
from services.scheduler.plugins.fits import gpu_room, host_room
from services.scheduler.plugins.gang import members_that_fit

NAME = "backfill"


def room_for(job: Job, cluster: Cluster) -> BoolArray | None:
    """Just enough nodes to take all the job's members now (the ones with the most room
    first), or None when it does not fit."""
    per_node = members_that_fit(job, cluster)
    if job.gang == 1:
        fits = gpu_room(job, cluster) & host_room(job, cluster)
        per_node = np.where(fits, per_node, 0)
    if per_node.sum() < job.gang:
        return None
    order = np.argsort(-per_node, kind="stable")
    needed = int(np.searchsorted(np.cumsum(per_node[order]), job.gang)) + 1
    mask = np.zeros(cluster.n_nodes, bool)
    mask[order[:needed]] = True
    return mask


def reserve(state: CycleState, job: Job, cluster: Cluster) -> Reservation | None:
    """When and where the job could start once running jobs end as estimated."""
    now = state.now
    ends = [(now if r.stopping else r.started_at + (r.job.est_runtime_s or 0.0), r.job.job_id)
            for r in state.running.values() if r.stopping or r.job.est_runtime_s is not None]
    heapq.heapify(ends)  # the soonest first, without sorting thousands when a few make room
    freed: list[Slot] = []
    try:
        while ends:
            end, job_id = heapq.heappop(ends)
            for slot in state.running[job_id].slots:
                cluster.release(slot)
                freed.append(slot)
            mask = room_for(job, cluster)
            if mask is not None:
                return Reservation(job.job_id, max(end, state.now), mask)
        return None
    finally:
        for slot in freed:
            cluster.allocate(slot)


class Backfill:
    name = NAME

    def filter(self, state: CycleState, job: Job, cluster: Cluster) -> tuple[BoolArray, Status]:
        r = state.reservation
        n = cluster.n_nodes
        if r is None or r.job_id == job.job_id:
            return cluster.every_node(), SUCCESS
        if job.est_runtime_s is not None and state.now + job.est_runtime_s <= r.start:
            return cluster.every_node(), SUCCESS
        mask = ~r.nodes[:n]
        if (mask & state.feasible).any():
            return mask, SUCCESS
        return mask, unschedulable(NAME, (
            f"held back: the free nodes are reserved for blocked job {r.job_id} from "
            f"{r.start - state.now:.0f} s from now; an est_runtime_s under that would let it "
            "run first"))

    def post_filter(self, state: CycleState, job: Job, cluster: Cluster) -> Status:
        if state.reservation is not None:
            return unschedulable(NAME, "")
        found = reserve(state, job, cluster)
        if found is None:
            return unschedulable(NAME, "")
        state.reservation = found
        return Status(Code.WAIT, (
            f"reserved: expected to start in about {found.start - state.now:.0f} s on "
            f"{int(found.nodes.sum())} node(s); shorter jobs may run first"), NAME)


def factory(args: PluginArgs) -> Backfill:
    return Backfill()
