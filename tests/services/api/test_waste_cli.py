"""``gpufleet jobs --waste``, a job's measured usage in ``gpufleet jobs <id>``, drained GPUs in
``gpufleet top``, against a running api on the real broker and warehouse."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest

from gpufleet.config import BusSettings
from gpufleet.contracts import DrainCause, GpuDrain, JobState, RightSizingReport
from gpufleet.topics import create_topics

from .builders import make_job, make_node
from .conftest import RunningApi, start_api
from .test_cli import gpufleet
from .test_waste_api import T0, store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
async def api(kafka_bootstrap: str, warehouse_url: str, tenant: str) -> AsyncIterator[RunningApi]:
    bus = BusSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"c{uuid.uuid4().hex[:10]}",
                      cluster="waste-cli")
    await create_topics(bus, replication_factor=1, partitions=1)
    await store(warehouse_url, tenant, bus.cluster)
    async with start_api(bus, clickhouse_url=warehouse_url) as running:
        node = make_node("n1").gpus(2).util(80, 1)
        await running.publish("nodes", node.inventory())
        await running.publish("gpu.samples", node.sample())
        job = make_job(f"{tenant}-a").tenant(tenant).gpus(2).on("n1", 0, 1)
        await running.publish("jobs.events",
                              msgspec.structs.replace(job.event(JobState.PLACED), ts=T0 - 60))
        for job_id, busy in ((f"{tenant}-x", 600), (f"{tenant}-y", 60)):
            await running.publish("jobs.rightsizing", RightSizingReport(
                job_id=job_id, tenant=tenant, gpus_requested=4, gpus_busy=1, gpu_minutes=720,
                busy_gpu_minutes=busy, util_p95=20, recommended_gpus=1,
                recommendation="asked 4 GPUs, 1 was busy, p95 20 %: ask for 1 GPU"))
        await running.publish("gpu.drains", GpuDrain(
            cluster=bus.cluster, node="n1", gpu=1, cause=DrainCause.ROW_REMAP,
            reason="row remapping failed", since=T0))
        await running.wait_for("/api/v1/rightsizing", lambda b: b["total"] == 2)
        await running.wait_for("/api/v1/nodes", lambda b: any(
            g.get("drain") for n in b["nodes"] for g in n["gpus"]))
        yield running


async def test_jobs_waste(api: RunningApi, tenant: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await gpufleet(api, capsys, "jobs", "--waste")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["JOB", "TENANT", "STATE", "ASKED", "BUSY"]
    assert [line.split()[0] for line in lines[1:3]] == [f"{tenant}-y", f"{tenant}-x"]
    assert lines[1].split()[7:9] == ["12.00", "11.00"]  # GPU-hours, idle GPU-hours
    assert lines[-1] == "2 of 2 jobs with a right-sizing report"

    code, out, _ = await gpufleet(api, capsys, "jobs", "--waste", "--tenant", tenant,
                                  "--hours", "24")
    assert code == 0
    assert out.startswith(f"tenant {tenant}, last 24 h: allocated 0.50 GPU-h, busy 0.20 (40%), "
                          "idle 0.30, energy 30.00 kWh; 1 of 1 warned jobs reclaimed (0.83 idle "
                          "GPU-h); 1 GPUs to give back")

    code, out, _ = await gpufleet(api, capsys, "jobs", "--waste", "--json")
    assert json.loads(out)["rightsizing"]["total"] == 2

    code, _, err = await gpufleet(api, capsys, "jobs", "--waste", "--tenant", "bad\x01name")
    assert code == 1 and "400" in err and "tenant" in err


async def test_job_detail_and_top(api: RunningApi, tenant: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await gpufleet(api, capsys, "jobs", f"{tenant}-a")
    assert code == 0
    assert "  measured: 0.40 GPU-h, busy 0.20, mean 40.5 %, peak memory 40.0 GiB" in out
    assert "    n1/0: mean 80.0 %, max 95.0 %, peak 40.0 GiB" in out
    assert "  right-sizing (final): asked 2 GPUs, 1 was busy, p95 80 %: ask for 1 GPU" in out

    code, out, _ = await gpufleet(api, capsys, "top", "--once", "--no-color")
    assert code == 0
    assert "  1D" in out  # the drained GPU's cell
    assert "DRAINED (1)" in out and "n1/1    row_remap row remapping failed" in out
