"""Fluent builders for the scheduler tests: jobs, nodes, clusters, cycle states."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from gpufleet.contracts import GpuHealth, GpuInfo, JobSpec, NodeInventory
from services.scheduler.cluster import Cluster, NodeSpec, Slot
from services.scheduler.framework import CycleState, Running
from services.scheduler.jobs import FULL, Job


@dataclass
class JobBuilder:
    job: Job

    def gpus(self, n: int) -> JobBuilder:
        return JobBuilder(replace(self.job, gpus=n))

    def share(self, milli: int) -> JobBuilder:
        return JobBuilder(replace(self.job, milli=milli))

    def tenant(self, name: str) -> JobBuilder:
        return JobBuilder(replace(self.job, tenant=name))

    def priority(self, p: int) -> JobBuilder:
        return JobBuilder(replace(self.job, priority=p))

    def gang(self, n: int) -> JobBuilder:
        return JobBuilder(replace(self.job, gang=n))

    def models(self, *names: str) -> JobBuilder:
        return JobBuilder(replace(self.job, models=tuple(sorted(names))))

    def cpu(self, milli: int) -> JobBuilder:
        return JobBuilder(replace(self.job, cpu_milli=milli))

    def memory(self, mib: int) -> JobBuilder:
        return JobBuilder(replace(self.job, memory_mib=mib))

    def runtime(self, seconds: float) -> JobBuilder:
        return JobBuilder(replace(self.job, est_runtime_s=seconds))

    def seq(self, n: int) -> JobBuilder:
        return JobBuilder(replace(self.job, seq=n))

    def build(self) -> Job:
        return self.job

    def spec(self) -> JobSpec:
        j = self.job
        return JobSpec(job_id=j.job_id, tenant=j.tenant, priority=j.priority, gpus=j.gpus,
                       gpu_milli=j.milli, gpu_models=list(j.models), cpu_milli=j.cpu_milli,
                       gang=j.gang, est_runtime_s=j.est_runtime_s)


def make_job(job_id: str) -> JobBuilder:
    return JobBuilder(Job(job_id=job_id))


@dataclass
class NodeBuilder:
    node: NodeSpec

    def gpus(self, n: int) -> NodeBuilder:
        return NodeBuilder(replace(self.node, gpus=n))

    def model(self, name: str) -> NodeBuilder:
        return NodeBuilder(replace(self.node, model=name))

    def cpu(self, milli: int) -> NodeBuilder:
        return NodeBuilder(replace(self.node, cpu_milli=milli))

    def unhealthy(self, *gpus: int) -> NodeBuilder:
        return NodeBuilder(replace(self.node, healthy=tuple(
            g not in gpus for g in range(self.node.gpus))))

    def offline(self) -> NodeBuilder:
        return NodeBuilder(replace(self.node, online=False))

    def domains(self, *per_gpu: int) -> NodeBuilder:
        return NodeBuilder(replace(self.node, domains=per_gpu))

    def build(self) -> NodeSpec:
        return self.node

    def inventory(self, cluster: str = "test") -> NodeInventory:
        n = self.node
        health = n.healthy or (True,) * n.gpus
        return NodeInventory(cluster=cluster, node=n.name, cpu_milli=n.cpu_milli,
                             memory_mib=n.memory_mib, online=n.online, gpus=[
                                 GpuInfo(index=g, uuid=f"{n.name}-{g}", model=n.model,
                                         memory_total_bytes=80 << 30,
                                         health=GpuHealth.OK if health[g] else GpuHealth.LOST)
                                 for g in range(n.gpus)])


def make_node(name: str) -> NodeBuilder:
    return NodeBuilder(NodeSpec(name=name, model="H100", gpus=8, cpu_milli=128_000,
                                memory_mib=1 << 20))


@dataclass
class ClusterBuilder:
    nodes: list[NodeSpec] = field(default_factory=list)
    used: list[tuple[str, tuple[int, ...], int]] = field(default_factory=list)

    def node(self, b: NodeBuilder) -> ClusterBuilder:
        return ClusterBuilder([*self.nodes, b.build()], self.used)

    def use(self, node: str, gpus: tuple[int, ...], milli: int = FULL) -> ClusterBuilder:
        return ClusterBuilder(self.nodes, [*self.used, (node, gpus, milli)])

    def build(self) -> Cluster:
        c = Cluster()
        for n in self.nodes:
            c.upsert(n)
        for name, gpus, milli in self.used:
            c.allocate(Slot(c.index[name], gpus, milli))
        return c


def make_cluster() -> ClusterBuilder:
    return ClusterBuilder()


def cycle_state(running: dict[str, Running] | None = None, pending: list[Job] | None = None,
                capacity: int = 0, **kw: object) -> CycleState:
    state = CycleState(now=0.0, rng=np.random.default_rng(0), running=running or {},
                       pending=pending or [], capacity_milli=capacity, **kw)  # type: ignore[arg-type]
    return state


def use_at_random(cluster: Cluster, seed: int) -> Cluster:
    """Up to three GPUs of each node taken, each by a share or a whole GPU with some CPU and
    memory, drawn from ``seed``: a busy cluster with many free shapes."""
    rng = np.random.default_rng(seed)
    for n in range(cluster.n_nodes):
        for g in range(int(rng.integers(0, 4))):
            cluster.allocate(Slot(n, (g,), int(rng.choice([300, 500, 1000])),
                                  int(rng.integers(0, 8)) * 4000, int(rng.integers(0, 8)) << 14))
    return cluster
