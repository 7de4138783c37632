"""Preemption: a job that cannot fit evicts the smallest set of lower-priority jobs (or jobs
borrowing another tenant's quota) that makes room. Evicted jobs get a StopJob and go back to
their queue when the stop is confirmed; the preemptor waits for that and preempts nothing more
meanwhile.

For each member, every node holding evictable jobs is tried: its evictable jobs are taken,
largest first, until the member fits; the node needing the fewest evictions wins (then the
lowest priorities). Members are planned one after another against the room already planned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.scheduler.cluster import Cluster, Slot
from services.scheduler.framework import (
    Code,
    CycleState,
    PluginArgs,
    Running,
    Status,
    unschedulable,
)
from services.scheduler.jobs import FULL, Job

NAME = "preemption"
MAX_PLANS_PER_CYCLE = 8  # preemptors planned per cycle (each plan walks the running jobs)
MAX_NODES_TRIED = 64  # nodes weighed per member, those with the fewest evictable slots first


def evictable(state: CycleState, job: Job, run: Running) -> bool:
    if run.stopping or run.job.job_id in state.victims:
        return False
    if run.job.priority < job.priority:
        return True
    return run.borrowed and not state.borrowing and run.job.tenant != job.tenant


def fits_after(job: Job, cluster: Cluster, n: int, freed: Sequence[Slot]) -> bool:
    """Would one member fit on node ``n`` once the ``freed`` slots there are given back?"""
    used = cluster.used[n].copy()
    cpu, mem = int(cluster.cpu_used[n]), int(cluster.mem_used[n])
    for s in freed:
        used[list(s.gpus)] -= s.milli
        cpu, mem = cpu - s.cpu_milli, mem - s.memory_mib
    usable = cluster.exists[n] & cluster.healthy[n] & cluster.online[n]
    eff = np.where(usable, FULL - used, 0)
    gpu_ok = eff.max() >= job.milli if job.milli < FULL else (eff == FULL).sum() >= job.gpus
    return bool(gpu_ok) and cluster.cpu_total[n] - cpu >= job.cpu_milli and (
        cluster.mem_total[n] - mem >= job.memory_mib)


def cheapest_node(job: Job, cluster: Cluster, pool: list[Running]
                  ) -> tuple[int, list[Running]] | None:
    """The node where one member fits after the fewest evictions, and whom to evict."""
    by_node: dict[int, list[tuple[Running, Slot]]] = {}
    for run in pool:
        for slot in run.slots:
            by_node.setdefault(slot.node, []).append((run, slot))
    best: tuple[tuple[int, int], int, list[Running]] | None = None
    tried = 0
    for n, items in sorted(by_node.items(), key=lambda kv: len(kv[1])):
        if tried >= MAX_NODES_TRIED:
            break
        if not cluster.model_mask(job.models)[n] or not fits_after(
                job, cluster, n, [s for _, s in items]):
            continue
        tried += 1
        items.sort(key=lambda rs: (rs[0].job.priority, -rs[1].milli * len(rs[1].gpus)))
        chosen: list[tuple[Running, Slot]] = []
        for item in items:
            chosen.append(item)
            if fits_after(job, cluster, n, [s for _, s in chosen]):
                break
        cost = (len(chosen), max(r.job.priority for r, _ in chosen))
        if best is None or cost < best[0]:
            best = (cost, n, [r for r, _ in chosen])
    return None if best is None else (best[1], best[2])


def plan(job: Job, cluster: Cluster, pool: list[Running]) -> list[Running] | None:
    """Victims for all members, or None; the cluster is left as it was."""
    victims: list[Running] = []
    taken: list[Slot] = []
    try:
        for _ in range(job.gang):
            found = cheapest_node(job, cluster, [r for r in pool if r not in victims])
            if found is None:
                return None
            n, runs = found
            for run in runs:
                victims.append(run)
                for slot in run.slots:
                    cluster.release(slot)
            if not fits_after(job, cluster, n, []):
                return None
            member = Slot(n, cluster.pick_gpus(n, job.gpus, job.milli), job.milli,
                          job.cpu_milli, job.memory_mib)
            cluster.allocate(member)
            taken.append(member)
        return victims
    finally:
        for slot in taken:
            cluster.release(slot)
        for run in victims:
            for slot in run.slots:
                cluster.allocate(slot)


class Preemption:
    name = NAME

    def post_filter(self, state: CycleState, job: Job, cluster: Cluster) -> Status:
        waiting = [v for v in state.nominations.get(job.job_id, ())
                   if v in state.running and state.running[v].stopping]
        if waiting:
            return Status(Code.WAIT, f"waiting for preempted job(s) {', '.join(waiting)} to stop",
                          NAME)
        plans = state.memo.get(NAME, 0)
        if plans >= MAX_PLANS_PER_CYCLE or not state.census.may_preempt(job, state.borrowing):
            return unschedulable(NAME, "")  # no plan left this cycle, or no job to evict
        state.memo[NAME] = plans + 1
        pool = [r for r in state.running.values() if evictable(state, job, r)]
        victims = plan(job, cluster, pool) if pool else None
        if not victims:
            return unschedulable(NAME, "")
        state.victims.extend(r.job.job_id for r in victims)
        names = ", ".join(r.job.job_id for r in victims)
        return Status(Code.WAIT, f"preempting {len(victims)} lower-priority job(s) to make room: "
                      f"{names}", NAME)


def factory(args: PluginArgs) -> Preemption:
    return Preemption()
