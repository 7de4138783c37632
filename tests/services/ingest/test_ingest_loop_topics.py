"""Integration, on the real broker and warehouse: the closed loop's messages (reclaims, GPU
drains, right-sizing) published on their topics become rows the analyst views show."""

from __future__ import annotations

import time
from typing import Any

import pytest
from ingest_builders import eventually, unique
from test_ingest_flow import send_all

from gpufleet.contracts import (
    DrainCause,
    GpuDrain,
    GpuRef,
    ReclaimRequest,
    ReclaimWarning,
    RightSizingReport,
)
from services.ingest.config import IngestSettings

pytestmark = pytest.mark.integration


async def test_loop_messages_become_rows_of_the_views(settings: IngestSettings, ch: Any,
                                                      start_worker: Any) -> None:
    node, job = unique("loop"), unique("job")
    idle_since = float(int(time.time()) - 3600)
    gpus = [GpuRef(node=node, gpu=0), GpuRef(node=node, gpu=1)]
    await send_all(settings, [
        ReclaimWarning(job_id=job, tenant="t1", queue="q", policy="research", gpus=gpus,
                       idle_since=idle_since, reclaim_at=idle_since + 1800, util_mean=1.5,
                       threshold=5),
        ReclaimRequest(job_id=job, tenant="t1", queue="q", policy="research", gpus=gpus,
                       action="requeue", idle_since=idle_since, util_mean=1.5, threshold=5,
                       reason="reclaimed: idle below 5 % for 30 min")], "reclaims")
    await send_all(settings, [GpuDrain(cluster="test", node=node, gpu=3, cause=DrainCause.XID,
                                       reason="XID 79", jobs=[job], since=idle_since)],
                   "gpu.drains")
    await send_all(settings, [RightSizingReport(
        job_id=job, tenant="t1", gpus_requested=8, gpus_busy=2, util_p95=31,
        recommended_gpus=2, recommendation="asked 8 GPUs, 2 were busy, p95 31 %")],
        "jobs.rightsizing")
    await start_worker(settings)

    q = ("SELECT reclaimed, action, gpu_count, policy, toUnixTimestamp(idle_since) "
         f"FROM v_reclaims WHERE job_id = '{job}'")
    expected: list[tuple[Any, ...]] = [(True, "requeue", 2, "research", int(idle_since))]
    assert await eventually(lambda: ch.query(q).result_rows, expected) == expected
    q = f"SELECT gpu, cause, jobs_moved, drained_now FROM v_gpu_drains WHERE node = '{node}'"
    expected = [(3, "xid", [job], True)]
    assert await eventually(lambda: ch.query(q).result_rows, expected) == expected
    q = ("SELECT gpus_requested, recommended_gpus, gpus_to_give_back, recommendation "
         f"FROM v_job_rightsizing WHERE job_id = '{job}'")
    expected = [(8, 2, 6, "asked 8 GPUs, 2 were busy, p95 31 %")]
    assert await eventually(lambda: ch.query(q).result_rows, expected) == expected
