"""Fluent builders for the messages the ingest tests feed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from gpufleet.contracts import GpuSample, JobEvent, JobSpec, JobState, NodeSample, Placement

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC, a minute boundary


class SampleBuilder:
    def __init__(self, node: str) -> None:
        self._node = node
        self._cluster = "test"
        self._ts = T0
        self._gpus: list[GpuSample] = []

    def at(self, ts: float) -> SampleBuilder:
        self._ts = ts
        return self

    def gpu(self, index: int, util: float | None = 50.0, **fields: Any) -> SampleBuilder:
        fields.setdefault("mem_used_bytes", 1 << 30)
        fields.setdefault("power_mw", 100_000)
        self._gpus.append(GpuSample(index=index, uuid=f"GPU-{self._node}-{index}",
                                    util_gpu=util, **fields))
        return self

    def build(self) -> NodeSample:
        return NodeSample(cluster=self._cluster, node=self._node, ts=self._ts,
                          gpus=self._gpus or [GpuSample(index=0, uuid="GPU-0", util_gpu=1.0)])


def make_sample(node: str = "n1") -> SampleBuilder:
    return SampleBuilder(node)


class EventBuilder:
    def __init__(self, job_id: str) -> None:
        self._f: dict[str, Any] = {"job_id": job_id, "state": JobState.STARTED, "ts": T0}

    def state(self, s: JobState) -> EventBuilder:
        self._f["state"] = s
        return self

    def on(self, node: str, *gpus: int) -> EventBuilder:
        self._f["node"], self._f["gpus"] = node, list(gpus)
        return self

    def tenant(self, t: str) -> EventBuilder:
        self._f["tenant"] = t
        return self

    def at(self, ts: float) -> EventBuilder:
        self._f["ts"] = ts
        return self

    def build(self) -> JobEvent:
        return JobEvent(**self._f)


def make_event(job_id: str) -> EventBuilder:
    return EventBuilder(job_id)


def make_placement(job_id: str, node: str, *gpus: int, tenant: str = "t1") -> Placement:
    return Placement(job=JobSpec(job_id=job_id, tenant=tenant, gpus=len(gpus)), node=node,
                     gpus=list(gpus), ts=T0)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def eventually(fn: Callable[[], Any], expected: Any, timeout: float = 40.0) -> Any:
    """Poll ``fn`` (run in a thread) until it returns ``expected``; the last value otherwise."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(fn)
        if value == expected:
            return value
        await asyncio.sleep(0.3)
    return value
