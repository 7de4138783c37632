"""Fluent builders of the messages the api reads, for tests."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gpufleet.contracts import (
    GpuInfo,
    GpuSample,
    JobEvent,
    JobSpec,
    JobState,
    JobSummary,
    NodeInventory,
    NodeSample,
    NodeState,
    Placement,
    SchedulerState,
)


@dataclass
class NodeBuilder:
    name: str
    n_gpus: int = 8
    gpu_model: str = "H100"
    utils: list[float] = field(default_factory=list)
    used: dict[int, int] = field(default_factory=dict)  # gpu -> milli in use
    sick: set[int] = field(default_factory=set)
    cluster: str = "test"

    def gpus(self, n: int) -> NodeBuilder:
        self.n_gpus = n
        return self

    def model(self, m: str) -> NodeBuilder:
        self.gpu_model = m
        return self

    def util(self, *values: float) -> NodeBuilder:
        self.utils = list(values)
        return self

    def busy(self, *indices: int, milli: int = 1000) -> NodeBuilder:
        self.used.update(dict.fromkeys(indices, milli))
        return self

    def unhealthy(self, *indices: int) -> NodeBuilder:
        self.sick |= set(indices)
        return self

    def inventory(self) -> NodeInventory:
        return NodeInventory(cluster=self.cluster, node=self.name, gpus=[
            GpuInfo(index=i, uuid=f"GPU-{self.name}-{i}", model=self.gpu_model,
                    memory_total_bytes=80 << 30) for i in range(self.n_gpus)])

    def sample(self, ts: float | None = None) -> NodeSample:
        utils = self.utils or [0.0] * self.n_gpus
        gpus = [GpuSample(index=i, uuid=f"GPU-{self.name}-{i}", util_gpu=utils[i % len(utils)],
                          power_mw=300_000, temp_c=55, mem_used_bytes=10 << 30)
                for i in range(self.n_gpus)]
        if ts is None:
            return NodeSample(cluster=self.cluster, node=self.name, gpus=gpus)
        return NodeSample(cluster=self.cluster, node=self.name, gpus=gpus, ts=ts)

    def state(self) -> NodeState:
        return NodeState(node=self.name, gpus=self.n_gpus, model=self.gpu_model,
                         free_milli=[1000 - self.used.get(i, 0) for i in range(self.n_gpus)],
                         healthy=[i not in self.sick for i in range(self.n_gpus)])


def make_node(name: str) -> NodeBuilder:
    return NodeBuilder(name)


@dataclass
class JobBuilder:
    job_id: str
    tenant_name: str = "team-a"
    n_gpus: int = 1
    on_node: str | None = None
    on_gpus: list[int] = field(default_factory=list)
    job_state: JobState = JobState.QUEUED

    def tenant(self, t: str) -> JobBuilder:
        self.tenant_name = t
        return self

    def gpus(self, n: int) -> JobBuilder:
        self.n_gpus = n
        return self

    def on(self, node: str, *gpus: int) -> JobBuilder:
        self.on_node, self.on_gpus, self.job_state = node, list(gpus), JobState.PLACED
        return self

    def spec(self) -> JobSpec:
        return JobSpec(job_id=self.job_id, tenant=self.tenant_name, gpus=self.n_gpus)

    def summary(self) -> JobSummary:
        return JobSummary(job_id=self.job_id, tenant=self.tenant_name, state=self.job_state,
                          gpus=self.n_gpus, gpu_milli=1000, node=self.on_node,
                          gpu_indices=self.on_gpus or None, since=time.time() - 90)

    def placement(self) -> Placement:
        assert self.on_node is not None
        return Placement(job=self.spec(), node=self.on_node, gpus=self.on_gpus)

    def event(self, state: JobState | None = None) -> JobEvent:
        return JobEvent(job_id=self.job_id, state=state or self.job_state,
                        tenant=self.tenant_name, node=self.on_node,
                        gpus=self.on_gpus or None)


def make_job(job_id: str) -> JobBuilder:
    return JobBuilder(job_id)


def snapshot(nodes: list[NodeBuilder], jobs: list[JobBuilder]) -> SchedulerState:
    return SchedulerState(
        cluster="test", nodes=[n.state() for n in nodes],
        queued=[j.summary() for j in jobs if j.on_node is None],
        running=[j.summary() for j in jobs if j.on_node is not None], decisions_per_s=3.0)
