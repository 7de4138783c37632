"""Builders of the analytics tests: windows by minute, placements, events, inventories."""

from __future__ import annotations

from typing import Any

from gpufleet.contracts import (
    GpuHealth,
    GpuInfo,
    GpuUtilWindow,
    JobEvent,
    JobSpec,
    JobState,
    NodeInventory,
    Placement,
)
from services.ingest.analytics.core import Analytics, Params
from services.ingest.analytics.policy import parse_policies

T0 = 1_800_000_000.0  # minute 0 of every test's event time
POLICIES = ("default: name=test idle_timeout=3m min_util=5 grace=2m; queue=prod: off; "
            "tenant=keep: name=keep idle_timeout=3m min_util=5 grace=2m requeue=no")


def window(minute: int, util: float, job: str | None = "j1", node: str = "n1", gpu: int = 0,
           tenant: str | None = "t1", mem: float = 0.0, p95: float | None = None) -> GpuUtilWindow:
    return GpuUtilWindow(cluster="c", node=node, gpu=gpu, window_start=T0 + 60 * minute,
                         samples=60, util_mean=util, util_min=util, util_max=util,
                         util_p95=util if p95 is None else p95, mem_used_bytes_mean=mem,
                         job_id=job, tenant=tenant if job else None)


def placement(job: str = "j1", gpus: list[int] | None = None, node: str = "n1", attempt: int = 0,
              **spec: Any) -> Placement:
    gpus = [0] if gpus is None else gpus
    spec.setdefault("tenant", "t1")
    return Placement(job=JobSpec(job_id=job, gpus=len(gpus), **spec), node=node, gpus=gpus,
                     attempt=attempt, ts=T0)


def event(job: str, state: JobState, minute: float, attempt: int = 0, **kw: Any) -> JobEvent:
    return JobEvent(job_id=job, state=state, attempt=attempt, ts=T0 + 60 * minute, **kw)


def inventory(minute: float, health: dict[int, tuple[GpuHealth, str]] | None = None,
              gpus: int = 2, node: str = "n1") -> NodeInventory:
    health = health or {}
    return NodeInventory(cluster="c", node=node, ts=T0 + 60 * minute, gpus=[
        GpuInfo(index=i, uuid=f"GPU-{i}", model="H100", memory_total_bytes=80 << 30,
                health=health.get(i, (GpuHealth.OK, ""))[0],
                health_reason=health.get(i, (GpuHealth.OK, ""))[1] or None)
        for i in range(gpus)])


def analytics(policies: str = POLICIES, **params: Any) -> Analytics:
    params.setdefault("idle_after_s", 180.0)
    params.setdefault("undrain_after_s", 900.0)
    params.setdefault("rightsizing_every_s", 600.0)
    params.setdefault("settle_s", 90.0)
    p = Params(policies=parse_policies(policies), **params)
    return Analytics(params=p, gpus={}, jobs={}, reclaims={}, usage={}, drains={}, nodes={},
                     meta={})
