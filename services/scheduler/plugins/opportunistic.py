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
from services.scheduler.loop import Decision, LoopView, Offer
from services.scheduler.loopstops import LoopStop, gpus_of
from services.scheduler.measured import GpuLoad
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

    def may_lend(self, w: GpuUtilWindow) -> bool:
        return w.util_p95 < self.lend_below

    def offers(self, cluster: Cluster, view: LoopView) -> list[Offer]:
        """The GPUs that may lend now, the least busy first: given out, healthy, not drained,
        on an online node, recently measured idle with memory to spare, lending to nobody."""
        taken = borrowed_gpus(view)
        width = cluster.exists.shape[1]
        rows: list[tuple[int, int]] = []
        loads: list[GpuLoad] = []
        for (node, gpu), load in view.measured.gpus.items():
            row = cluster.index.get(node)
            if row is not None and gpu < width and (node, gpu) not in taken:
                rows.append((row, gpu))
                loads.append(load)
        if not rows:
            return []
        n, g = (np.array(col, np.int64) for col in zip(*rows, strict=True))
        p95 = np.array([x.util_p95 for x in loads])
        mem = np.array([x.mem_frac for x in loads])
        at = np.array([x.at for x in loads])
        ok = (cluster.online[n] & cluster.exists[n, g] & cluster.healthy[n, g]
              & (cluster.used[n, g] > 0) & (view.now - at <= view.measured.max_age_s)
              & (p95 < self.lend_below) & (mem <= MAX_MEM_FRAC))
        order = [i for i in np.lexsort((g, n, mem, p95)).tolist() if ok[i]]
        return [Offer(int(n[i]), int(g[i]), float(p95[i])) for i in order]

    def take(self, job: Job, cluster: Cluster, offers: list[Offer]) -> tuple[Slot, str] | None:
        """The first offer on a node with the job's model, CPU and memory, and why."""
        if not offers:
            return None
        nodes = host_room(job, cluster) & cluster.model_mask(job.models)[:cluster.n_nodes]
        i = next((i for i, o in enumerate(offers) if nodes[o.node]), None)
        if i is None:
            return None
        o = offers.pop(i)
        why = (f"opportunistic: on lent GPU {o.gpu} of {cluster.names[o.node]} (given out, "
               f"measured idle: p95 {o.util_p95:.0f} % < {self.lend_below:g} %); the first to "
               "go when its owners are busy")
        return Slot(o.node, (o.gpu,), 0, job.cpu_milli, job.memory_mib), why

    def react(self, msg: object, view: LoopView) -> list[Decision]:
        if not isinstance(msg, GpuUtilWindow):
            return []
        load = view.measured.load(msg.node, msg.gpu, view.now)  # the latest window, this or not
        if load is None or load.util_p95 < self.busy_at:
            return []
        gpu = (msg.node, msg.gpu)  # only this GPU's borrowers: no map of every lent GPU
        borrowers = sorted(job_id for job_id, run in view.running.items()
                           if lent(run) and gpu in gpus_of(run, view.names))
        why = (f"opportunistic: the owners of GPU {msg.gpu} on {msg.node} are busy again "
               f"(p95 {load.util_p95:.0f} % >= {self.busy_at:g} %)")
        return [LoopStop(job_id, True, why) for job_id in borrowers
                if not view.running[job_id].stopping]


def factory(args: PluginArgs) -> Opportunistic:
    return Opportunistic(args.opportunistic_queues, args.lend_below_util, args.owners_busy_util)
