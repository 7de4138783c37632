"""The closed loop shown, on the real broker and the real warehouse: a job's measured usage and
right-sizing, a tenant's waste, reclaim and drain events on the stream, drained GPUs on the
nodes; bad input answered 400 and a warehouse that is away answered without failing."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import clickhouse_connect
import msgspec
import pytest

from gpufleet.config import BusSettings
from gpufleet.contracts import (
    DrainCause,
    GpuDrain,
    GpuRef,
    JobState,
    Message,
    ReclaimRequest,
    ReclaimWarning,
    RightSizingReport,
)
from gpufleet.localkafka import free_port
from gpufleet.topics import create_topics
from services.ingest.looprows import loop_row
from services.ingest.rows import to_columns
from services.ingest.sink import ClickHouseSink

from .builders import make_job, make_node
from .conftest import ADMIN, RunningApi, auth, start_api
from .test_history import COLUMNS, row

pytestmark = pytest.mark.integration
CLUSTER = "waste"
T0 = (int(time.time()) // 3600 - 5) * 3600  # on the hour, recent (the tables have a TTL)
GIB = 1 << 30


@pytest.fixture(scope="module")
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"  # the loop views have no cluster: a tenant of our own


@pytest.fixture(scope="module")
async def api(kafka_bootstrap: str, warehouse_url: str) -> AsyncIterator[RunningApi]:
    bus = BusSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"w{uuid.uuid4().hex[:10]}",
                      cluster=CLUSTER)
    await create_topics(bus, replication_factor=1, partitions=1)
    async with start_api(bus, clickhouse_url=warehouse_url) as running:
        yield running


def windows(tenant: str, cluster: str = CLUSTER) -> list[list[Any]]:
    """Job a (2 GPUs, one busy) for two hours; job b idle for an hour, then reclaimed."""
    out = []
    for m in range(0, 120, 10):  # a window each 10 minutes is enough for the sums
        t = T0 + m * 60
        out.append(row("n1", 0, t, 80, util_max=95, job=f"{tenant}-a", tenant=tenant,
                       cluster=cluster))
        out.append(row("n1", 1, t, 1, util_max=3, job=f"{tenant}-a", tenant=tenant,
                       cluster=cluster))
        if m < 60:
            out.append(row("n2", 0, t, 2, util_max=4, job=f"{tenant}-b", tenant=tenant,
                           cluster=cluster))
    out.append(row("n9", 0, T0, 99, job="other", tenant="someone-else", cluster=cluster))
    return [[*r[:11], 40 * GIB if r[7] == 80 else 2 * GIB, *r[12:]] for r in out]


def loop_messages(tenant: str) -> list[Message]:
    b = f"{tenant}-b"
    gpus = [GpuRef(node="n2", gpu=0)]
    return [
        ReclaimWarning(job_id=b, tenant=tenant, policy="research-default", gpus=gpus,
                       idle_since=T0, reclaim_at=T0 + 3000, util_mean=2, threshold=5,
                       reason="idle", ts=T0 + 2400),
        ReclaimRequest(job_id=b, tenant=tenant, policy="research-default", gpus=gpus,
                       action="requeue", idle_since=T0, util_mean=2, threshold=5,
                       reason="reclaimed: idle below 5 % for 50 min under policy "
                              "research-default; requeued", ts=T0 + 3000),
        RightSizingReport(job_id=f"{tenant}-a", tenant=tenant, final=True, gpus_requested=2,
                          gpus_seen=2, gpus_busy=1, windows=24, gpu_minutes=240,
                          busy_gpu_minutes=120, util_mean=40.5, util_p95=80, util_max=95,
                          mem_peak_bytes=40 * GIB, recommended_gpus=1,
                          recommendation="asked 2 GPUs, 1 was busy, p95 80 %: ask for 1 GPU",
                          ts=T0 + 7300),
    ]


@pytest.fixture(scope="module")
async def stored(warehouse_url: str, tenant: str) -> None:
    await store(warehouse_url, tenant, CLUSTER)


async def store(warehouse_url: str, tenant: str, cluster: str) -> None:
    """The tenant's windows in ``cluster`` and its loop decisions, in the warehouse."""
    client = clickhouse_connect.get_client(dsn=warehouse_url)
    try:
        client.insert("gpu_util_1m", windows(tenant, cluster), column_names=COLUMNS)
    finally:
        client.close()
    rows: dict[str, list[dict[str, Any]]] = {}
    for m in loop_messages(tenant):
        found = loop_row(m)
        assert found is not None
        rows.setdefault(found[0], []).append(found[1])
    sink = ClickHouseSink(warehouse_url)  # the writer's own path into the warehouse
    await sink.start(tables=rows)
    try:
        for table, batch in rows.items():
            await sink.insert(table, to_columns(batch), f"{tenant}-{table}")
    finally:
        await sink.close()


async def test_tenant_waste(api: RunningApi, tenant: str, stored: None) -> None:
    for step in (3600, 1800):  # the hourly rollup and the minute rows agree
        response = await api.get(f"/api/v1/tenants/{tenant}/waste", step=str(step),
                                 **{"from": str(T0), "to": str(T0 + 3 * 3600)})
        assert response.status == 200, await response.text()
        body = await response.json()
        t = body["totals"]
        # a: 2 GPUs x 12 windows x 60 s (one busy); b: 6 idle windows
        assert t["allocated_gpu_hours"] == pytest.approx(30 / 60, abs=1e-4)
        assert t["busy_gpu_hours"] == pytest.approx(12 / 60, abs=1e-4)
        assert t["idle_gpu_hours"] == pytest.approx(18 / 60, abs=1e-4)
        assert t["busy_share"] == pytest.approx(0.4)
        assert (t["warned_jobs"], t["reclaimed_jobs"], t["gpus_to_give_back"]) == (1, 1, 1)
        assert t["idle_gpu_hours_reclaimed"] == pytest.approx(50 / 60, abs=1e-3)
        assert t["energy_kwh"] == pytest.approx(30, abs=1e-3)  # 1 kWh per window
        assert sum(p["allocated_gpu_hours"] for p in body["series"]) == pytest.approx(0.5)
        assert body["series"][0]["ts"] == T0
    [reclaimed] = body["reclaims"]
    assert (reclaimed["job_id"], reclaimed["action"], reclaimed["gpus"]) == (
        f"{tenant}-b", "requeue", 1)
    assert reclaimed["reclaimed_at"] == pytest.approx(T0 + 3000)
    [job] = body["jobs"]
    assert (job["job_id"], job["recommended_gpus"], job["idle_gpu_hours"], job["source"]) == (
        f"{tenant}-a", 1, 2.0, "warehouse")


async def test_job_detail_usage_rightsizing_reclaims_and_the_stream(
        api: RunningApi, tenant: str, stored: None) -> None:
    job_a, job_b = f"{tenant}-a", f"{tenant}-b"
    for job_id, node, gpus in ((job_a, "n1", (0, 1)), (job_b, "n2", (0,))):
        job = make_job(job_id).tenant(tenant).gpus(len(gpus)).on(node, *gpus)
        await api.publish("jobs.events",
                          msgspec.structs.replace(job.event(JobState.PLACED), ts=T0 - 60))
    await api.publish("nodes", make_node("n1").gpus(2).inventory())
    await api.wait_for(f"/api/v1/jobs/{job_b}", lambda b: b["job"]["state"] == "placed")

    # job a: per GPU from the warehouse; its right-sizing (not seen live) from the warehouse
    detail = await api.wait_for(f"/api/v1/jobs/{job_a}", lambda b: b["usage"] is not None)
    usage = detail["usage"]
    assert [(g["node"], g["gpu"], g["util_mean"], g["util_max"], g["mem_peak_bytes"])
            for g in usage["gpus"]] == [("n1", 0, 80, 95, 40 * GIB), ("n1", 1, 1, 3, 2 * GIB)]
    assert (usage["gpu_hours"], usage["busy_gpu_hours"], usage["mem_peak_bytes"]) == (
        pytest.approx(0.4), pytest.approx(0.2), 40 * GIB)
    assert detail["rightsizing"]["source"] == "warehouse"
    assert detail["rightsizing"]["recommendation"].endswith("ask for 1 GPU")

    # job b: its decisions arrive live, and are forwarded on the stream as they come
    stream = await api.client.get("/api/v1/stream", headers=auth(ADMIN))
    events = asyncio.create_task(_events(stream.content, {"reclaim", "drain"}))
    await asyncio.sleep(0.5)  # the stream is open: what follows is news to it
    [warning, request, _] = loop_messages(tenant)
    await api.publish("reclaims", warning, request)
    await api.publish("jobs.rightsizing", RightSizingReport(
        job_id=job_b, tenant=tenant, gpus_requested=1, gpus_seen=1, gpu_minutes=60,
        util_p95=3, recommended_gpus=0, recommendation="asked 1 GPU, none was busy"))
    await api.publish("gpu.drains", GpuDrain(cluster=CLUSTER, node="n1", gpu=1,
                                             cause=DrainCause.ECC, reason="ECC uncorrectable",
                                             jobs=[job_a], since=time.time()))
    got = await asyncio.wait_for(events, 15)
    stream.close()
    assert [(e["kind"], e.get("action")) for e in got["reclaim"]] == [
        ("warn", None), ("reclaim", "requeue")]
    assert (got["drain"][0]["node"], got["drain"][0]["gpu"], got["drain"][0]["cause"]) == (
        "n1", 1, "ecc")

    detail = await api.wait_for(f"/api/v1/jobs/{job_b}", lambda b: b["rightsizing"])
    assert (detail["rightsizing"]["source"], detail["rightsizing"]["final"]) == ("live", False)
    assert [r["kind"] for r in detail["reclaims"]] == ["warn", "reclaim"]
    assert detail["usage"]["gpus"][0]["util_mean"] == 2
    listed = await (await api.get("/api/v1/rightsizing", tenant=tenant)).json()
    assert [j["job_id"] for j in listed["jobs"]] == [job_b]
    nodes = await api.wait_for("/api/v1/nodes", lambda b: any(
        g.get("drain") for n in b["nodes"] for g in n["gpus"]))
    assert [(n["node"], g["index"], g["drain"]) for n in nodes["nodes"] for g in n["gpus"]
            if g.get("drain")] == [("n1", 1, "ecc")]


async def _events(content: Any, wanted: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Server-sent events of the kinds wanted, until each kind came at least once and the
    reclaims twice."""
    got: dict[str, list[dict[str, Any]]] = {k: [] for k in wanted}
    name = ""
    while len(got["reclaim"]) < 2 or not all(got.values()):
        line = (await content.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name in wanted:
            got[name].append(json.loads(line[6:]))
    return got


BAD = [
    ("/api/v1/tenants/a%01b/waste", {}, "tenant"),
    ("/api/v1/tenants/" + "x" * 254 + "/waste", {}, "tenant"),
    ("/api/v1/tenants/t/waste", {"from": "100", "to": "100"}, "from"),
    ("/api/v1/tenants/t/waste", {"step": "10"}, "step"),
    ("/api/v1/tenants/t/waste", {"from": "0", "to": "4000000000", "step": "60"}, "step"),
    ("/api/v1/tenants/t/waste", {"group_by": "job"}, "group_by"),
    ("/api/v1/rightsizing", {"limit": "0"}, "limit"),
    ("/api/v1/rightsizing", {"final": "maybe"}, "final"),
    ("/api/v1/rightsizing", {"tenant": ""}, "tenant"),
]


@pytest.mark.parametrize(("path", "params", "field"), BAD,
                         ids=[f"{p[-12:]}-{f}" for p, _, f in BAD])
async def test_bad_input_is_400_naming_the_field(api: RunningApi, path: str,
                                                 params: dict[str, str], field: str) -> None:
    response = await api.client.get(path, headers=auth(ADMIN), params=params)
    assert response.status == 400, await response.text()
    body = await response.json()
    assert body["field"] == field, body


async def test_without_the_warehouse(bus: BusSettings) -> None:
    """The job's live detail still answers, saying why its usage is missing; the waste is 503."""
    async with start_api(bus, clickhouse_url=f"http://127.0.0.1:{free_port()}") as api:
        job = make_job("alone").tenant("t").gpus(1).on("n1", 0)
        await api.publish("jobs.events", job.event(JobState.PLACED))
        detail = await api.wait_for("/api/v1/jobs/alone", lambda b: True)
        assert detail["usage"] is None and detail["rightsizing"] is None
        assert detail["usage_note"].startswith("the warehouse did not answer")
        response = await api.get("/api/v1/tenants/t/waste")
        assert response.status == 503
        assert "warehouse" in (await response.json())["error"]


def test_spec_documents_the_bounds() -> None:
    from services.api.app import ALL_ROUTES
    from services.api.openapi import spec

    document = spec(ALL_ROUTES)
    op = document["paths"]["/api/v1/tenants/{tenant}/waste"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert params["tenant"]["in"] == "path"
    tenant = params["tenant"]["schema"]
    assert tenant["maxLength"] == 253 and "pattern" in tenant
    assert params["step"]["schema"]["minimum"] == 60
    assert set(op["responses"]) == {"200", "400", "401", "403", "503"}
    job = document["components"]["schemas"]["JobDetail"]["properties"]
    assert {"usage", "rightsizing", "reclaims", "usage_note"} <= set(job)
