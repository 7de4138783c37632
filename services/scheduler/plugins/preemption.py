"""Preemption: a job that cannot fit evicts the smallest set of lower-priority jobs (or jobs
borrowing another tenant's quota) that makes room. Evicted jobs get a StopJob and go back to
their queue when the stop is confirmed; the preemptor waits for that and preempts nothing more
meanwhile.

For each member, every node holding evictable jobs is tried: its evictable jobs are taken,
largest first, until the member fits; the node needing the fewest evictions wins (then the
lowest priorities). Members are planned one after another against the room already planned.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

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


def evictable(state: CycleState, job: Job) -> list[Running]:
    """The running jobs ``job`` may evict: not stopping nor chosen already, and of lower
    priority, or borrowing another tenant's quota while ``job`` does not borrow."""
    chosen, priority, tenant = set(state.victims), job.priority, job.tenant
    takes_back = not state.borrowing
    # one pass over every running job, the tests inline: a plan walks thousands of them
    return [r for r in state.running.values() if not r.stopping and (
        r.job.priority < priority or (takes_back and r.borrowed and r.job.tenant != tenant))
        and r.job.job_id not in chosen]


def fits_after(job: Job, cluster: Cluster, n: int, freed: Sequence[Slot]) -> bool:
    """Would one member fit on node ``n`` once the ``freed`` slots there are given back?"""
    room = Room(cluster, n)
    for s in freed:
        room.free(s)
    return room.fits(job)


class Room:
    """What node ``n`` holds, as plain numbers (a node has a few GPUs: faster than numpy), to
    try evictions one at a time."""

    def __init__(self, cluster: Cluster, n: int) -> None:
        self.used = cluster.used[n].tolist()
        self.good = cluster.good[n] if cluster.usable[n] else [False] * len(self.used)
        self.cpu = int(cluster.cpu_free[n])
        self.mem = int(cluster.mem_free[n])

    def free(self, slot: Slot) -> None:
        for g in slot.gpus:
            self.used[g] -= slot.milli
        self.cpu += slot.cpu_milli
        self.mem += slot.memory_mib

    def fits(self, job: Job) -> bool:
        eff = [FULL - u if g else 0 for u, g in zip(self.used, self.good, strict=True)]
        gpu_ok = (max(eff, default=0) >= job.milli if job.milli < FULL
                  else eff.count(FULL) >= job.gpus)
        return gpu_ok and self.cpu >= job.cpu_milli and self.mem >= job.memory_mib


def cheapest_node(job: Job, cluster: Cluster, pool: list[Running]
                  ) -> tuple[int, list[Running]] | None:
    """The node where one member fits after the fewest evictions, and whom to evict."""
    by_node: defaultdict[int, list[tuple[Running, Slot]]] = defaultdict(list)
    for run in pool:  # thousands of jobs: the plainest loop
        for slot in run.slots:
            by_node[slot.node].append((run, slot))
    allowed = cluster.model_mask(job.models)
    best: tuple[tuple[int, int], int, list[Running]] | None = None
    tried = 0
    for n, items in sorted(by_node.items(), key=lambda kv: len(kv[1])):
        if tried >= MAX_NODES_TRIED:
            break
        if not allowed[n] or not fits_after(job, cluster, n, [s for _, s in items]):
            continue
        tried += 1
        items.sort(key=lambda rs: (rs[0].job.priority, -rs[1].milli * len(rs[1].gpus)))
        chosen: list[tuple[Running, Slot]] = []
        room = Room(cluster, n)
        for item in items:
            chosen.append(item)
            room.free(item[1])
            if room.fits(job):
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
            chosen = {id(r) for r in victims}
            found = cheapest_node(job, cluster, [r for r in pool if id(r) not in chosen]
                                  if chosen else pool)
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
        pool = evictable(state, job)
        victims = plan(job, cluster, pool) if pool else None
        if not victims:
            return unschedulable(NAME, "")
        state.victims.extend(r.job.job_id for r in victims)
        names = ", ".join(r.job.job_id for r in victims)
        return Status(Code.WAIT, f"preempting {len(victims)} lower-priority job(s) to make room: "
                      f"{names}", NAME)


def factory(args: PluginArgs) -> Preemption:
    return Preemption()
