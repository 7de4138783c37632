"""Filter: nodes with room for one member: whole GPUs free (or a GPU with the share free),
and the CPU and memory that go with it."""

from __future__ import annotations

import numpy as np

from services.scheduler.cluster import CPU, MEM, WHOLE, BoolArray, Cluster, IntArray
from services.scheduler.framework import SUCCESS, CycleState, PluginArgs, Status, unschedulable
from services.scheduler.jobs import FULL, TIMES, Job

NAME = "fits"


def gpu_room(job: Job, cluster: Cluster) -> BoolArray:
    n = cluster.n_nodes
    if job.milli < FULL:
        return cluster.best[:n] >= job.milli
    return cluster.whole[:n] >= job.gpus


def host_room(job: Job, cluster: Cluster) -> BoolArray:
    n = cluster.n_nodes
    return (cluster.cpu_free[:n] >= job.cpu_milli) & (cluster.mem_free[:n] >= job.memory_mib)


def why_not(job: Job, cluster: Cluster, among: BoolArray, gpu_ok: BoolArray) -> str:
    """A reason a person can act on, about the nodes that passed the other filters."""
    n = cluster.n_nodes
    if not (gpu_ok & among).any():
        if job.milli < FULL:
            best = int(cluster.best[:n][among].max(initial=0))
            return (f"needs {job.describe()}; the largest free share on any GPU is "
                    f"{best / FULL:g}")
        block = int(cluster.whole[:n][among].max(initial=0))
        return (f"needs {job.gpus}{TIMES}{'|'.join(job.models) or 'GPU'} on one node; "
                f"the largest free block is {block}")
    cpu = cluster.cpu_free[:n][gpu_ok & among]
    mem = cluster.mem_free[:n][gpu_ok & among]
    return (f"needs {job.cpu_milli / 1000:g} CPUs and {job.memory_mib} MiB next to its GPUs; "
            f"nodes with free GPUs have at most {int(np.max(cpu)) / 1000:g} CPUs and "
            f"{int(np.max(mem))} MiB free")


class Fits:
    name = NAME

    def filter(self, state: CycleState, job: Job, cluster: Cluster) -> tuple[BoolArray, Status]:
        gpu_ok = gpu_room(job, cluster)
        mask = gpu_ok & host_room(job, cluster)
        if (mask & state.feasible).any():
            return mask, SUCCESS
        return mask, unschedulable(NAME, why_not(job, cluster, state.feasible, gpu_ok))

    def fits_shapes(self, job: Job, cluster: Cluster, ids: IntArray) -> BoolArray:
        host = cluster.shapes.host[ids]
        # shares are sorted high to low: the first is the largest
        gpu_ok = (cluster.shapes.eff[ids, 0] >= job.milli if job.milli < FULL
                  else host[:, WHOLE] >= job.gpus)
        return gpu_ok & (host[:, CPU] >= job.cpu_milli) & (host[:, MEM] >= job.memory_mib)


def factory(args: PluginArgs) -> Fits:
    return Fits()
