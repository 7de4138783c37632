"""Loop plugin: opportunistic jobs run on GPU share that is allocated but measured idle.

A job of an opportunistic queue (``GPUFLEET_SCHEDULER_OPPORTUNISTIC_QUEUES``) is placed like
any other when free share fits it. When none does, and it asks for one GPU (whole or a share)
in one member, it may borrow: a GPU that is given out, healthy and not drained, whose latest
window (``gpu.util``, recent) shows p95 utilization under ``lend_below_util`` and less than
half its memory in use, and that lends to no other job. The borrower holds no share in the
scheduler's model (its slot's share is 0; its CPU and memory count as usual), and its placement
says ``lent`` so that the executor does not count it against the GPU either.

Borrowers are the first to go: a window of a lent GPU whose p95 reaches ``owners_busy_util``
stops and requeues every job borrowing it ("opportunistic: the owners of GPU 0 on n1 are busy
again (p95 62 % >= 50 %)"). The window measures the whole GPU, the borrower's own work
included: set the threshold above what borrowers use. A drain of the GPU moves them as any job.
Enable with ``GPUFLEET_SCHEDULER_LOOP=opportunistic``.
"""

from __future__ import annotations

import numpy as np

from gpufleet.contracts import GpuUtilWindow
from services.scheduler.cluster import Cluster, Slot
from services.scheduler.framework import PluginArgs, Running
from services.scheduler.jobs import Job
from services.scheduler.loop import Decision, LoopView
from services.scheduler.loopstops import LoopStop
from services.scheduler.plugins.fits import host_room

NAME = "opportunistic"
MAX_MEM_FRAC = 0.5  # a GPU with more of its memory in use lends nothing


def lent(run: Running) -> bool:
    """Whether a running job borrows (its slots hold no share in the model)."""
    return any(s.milli == 0 for s in run.slots)


def borrowed_gpus(view: LoopView) -> dict[tuple[str, int], list[str]]:
    """(node, GPU) -> the jobs borrowing it."""
    out: dict[tuple[str, int], list[str]] = {}
    for job_id, run in sorted(view.running.items()):
        if lent(run):
            for s in run.slots:
                for g in s.gpus:
                    out.setdefault((view.names[s.node], g), []).append(job_id)
    return out


class Opportunistic:
    name = NAME

    def __init__(self, queues: frozenset[str], lend_below: float, busy_at: float) -> None:
        self.queues = queues
        self.lend_below = lend_below
        self.busy_at = busy_at

    def wants(self, job: Job) -> bool:
        """An opportunistic job that may borrow: one member on one GPU."""
        return job.queue in self.queues and job.gang == 1 and job.gpus == 1

    def lend(self, job: Job, cluster: Cluster, view: LoopView) -> tuple[Slot, str] | None:
        """The GPU the job borrows (the least busy of those that may lend) and why, or None."""
        if not self.wants(job):
            return None
        taken = borrowed_gpus(view)
        n_nodes = cluster.n_nodes
        nodes = host_room(job, cluster) & cluster.model_mask(job.models)[:n_nodes]
        best: tuple[float, float, int, int] | None = None
        for n in np.flatnonzero(nodes & cluster.online[:n_nodes]).tolist():
            usable = cluster.exists[n] & cluster.healthy[n]
            for g in np.flatnonzero(usable & (cluster.used[n] > 0)).tolist():
                load = view.measured.load(cluster.names[n], g, view.now)
                if (load is None or load.util_p95 >= self.lend_below
                        or load.mem_frac > MAX_MEM_FRAC or (cluster.names[n], g) in taken):
                    continue
                key = (load.util_p95, load.mem_frac, n, g)
                if best is None or key < best:
                    best = key
        if best is None:
            return None
        p95, _, n, g = best
        why = (f"opportunistic: on lent GPU {g} of {cluster.names[n]} (given out, measured "
               f"idle: p95 {p95:.0f} % < {self.lend_below:g} %); the first to go when its "
               "owners are busy")
        return Slot(n, (g,), 0, job.cpu_milli, job.memory_mib), why

    def react(self, msg: object, view: LoopView) -> list[Decision]:
        if not isinstance(msg, GpuUtilWindow):
            return []
        load = view.measured.load(msg.node, msg.gpu, view.now)  # the latest window, this or not
        if load is None or load.util_p95 < self.busy_at:
            return []
        borrowers = borrowed_gpus(view).get((msg.node, msg.gpu), [])
        why = (f"opportunistic: the owners of GPU {msg.gpu} on {msg.node} are busy again "
               f"(p95 {load.util_p95:.0f} % >= {self.busy_at:g} %)")
        return [LoopStop(job_id, True, why) for job_id in borrowers
                if not view.running[job_id].stopping]


def factory(args: PluginArgs) -> Opportunistic:
    return Opportunistic(args.opportunistic_queues, args.lend_below_util, args.owners_busy_util)
