"""Samples of the closed loop's messages (reclaims, drains, right-sizing) for the contract
tests, one per kind of each topic."""

from __future__ import annotations

from typing import Any

from gpufleet.contracts import (
    DrainCause,
    GpuDrain,
    GpuRef,
    GpuUndrain,
    ReclaimRequest,
    ReclaimWarning,
    ReclaimWithdrawn,
    RightSizingReport,
)

LOOP_SAMPLES: list[tuple[str, Any]] = [
    ("reclaims", ReclaimWarning(job_id="j1", tenant="t", queue="q", policy="default",
                                gpus=[GpuRef(node="n1", gpu=0)], idle_since=1.8e9,
                                reclaim_at=1.8e9 + 600, util_mean=1.5, threshold=5)),
    ("reclaims", ReclaimWithdrawn(job_id="j1", policy="default", idle_since=1.8e9)),
    ("reclaims", ReclaimRequest(job_id="j1", policy="default", action="requeue",
                                idle_since=1.8e9, util_mean=1.5, threshold=5,
                                reason="reclaimed: idle below 5 % for 40 min")),
    ("gpu.drains", GpuDrain(cluster="c", node="n1", gpu=3, cause=DrainCause.XID, reason="XID 79",
                            jobs=["j1"], since=1.8e9)),
    ("gpu.drains", GpuUndrain(cluster="c", node="n1", gpu=3, reason="healthy for 15 min",
                              drained_since=1.8e9, healthy_since=1.8e9 + 60)),
    ("jobs.rightsizing", RightSizingReport(job_id="j1", gpus_requested=8, gpus_busy=2,
                                           util_p95=31, recommended_gpus=2,
                                           recommendation="asked 8 GPUs, 2 were busy, p95 31 %")),
]
