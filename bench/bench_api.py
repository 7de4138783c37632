"""The api under load: requests/s and p99 latency of the cluster summary and of a one-day
utilization history query, with 50 concurrent clients on loopback.

The api runs as ``gpufleet api`` in its own process, fed through a real broker (a fleet of
nodes, a queue and running jobs published to the topics) and a real warehouse holding a day of
per-minute rollups. The load comes from aiohttp clients in this process, bounded in count and
in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.report import Result
from gpufleet.bus import make_producer, publish, topic
from gpufleet.config import BusSettings
from gpufleet.contracts import (
    GpuInfo,
    GpuSample,
    JobState,
    JobSummary,
    NodeInventory,
    NodeSample,
    NodeState,
    SchedulerState,
    encode,
    key_of,
)
from gpufleet.localkafka import LocalKafka, free_port
from gpufleet.topics import create_topics

CLIENTS = 50
GPUS_PER_NODE = 8


def _fleet(nodes: int) -> tuple[list[NodeInventory], list[NodeSample], SchedulerState]:
    names = [f"node-{i:03d}" for i in range(nodes)]
    inventory = [NodeInventory(cluster="bench", node=n, gpus=[
        GpuInfo(index=g, uuid=f"GPU-{n}-{g}", model="H100", memory_total_bytes=80 << 30)
        for g in range(GPUS_PER_NODE)]) for n in names]
    samples = [NodeSample(cluster="bench", node=n, gpus=[
        GpuSample(index=g, uuid=f"GPU-{n}-{g}", util_gpu=float((i * 7 + g * 13) % 100),
                  power_mw=350_000, temp_c=60) for g in range(GPUS_PER_NODE)])
        for i, n in enumerate(names)]
    running = [JobSummary(job_id=f"run-{i}", tenant=f"t{i % 5}", state=JobState.STARTED, gpus=2,
                          gpu_milli=1000, node=names[i % nodes], gpu_indices=[0, 1])
               for i in range(nodes)]
    queued = [JobSummary(job_id=f"wait-{i}", tenant=f"t{i % 5}", state=JobState.QUEUED, gpus=1,
                         gpu_milli=1000, since=time.time()) for i in range(200)]
    snap = SchedulerState(cluster="bench", queued=queued, running=running, nodes=[
        NodeState(node=n, gpus=GPUS_PER_NODE, model="H100",
                  free_milli=[0, 0, *[1000] * (GPUS_PER_NODE - 2)],
                  healthy=[True] * GPUS_PER_NODE) for n in names])
    return inventory, samples, snap


async def _publish_fleet(bus: BusSettings, nodes: int) -> None:
    inventory, samples, snap = _fleet(nodes)
    producer = make_producer(bus)
    await producer.start()
    try:
        for msg in (*inventory, *samples):
            await publish(producer, bus, "nodes" if isinstance(msg, NodeInventory)
                          else "gpu.samples", msg)
        await producer.send_and_wait(topic(bus, "scheduler.state"), encode(snap), key=key_of(snap))
    finally:
        await producer.stop()


def _fill_warehouse(url: str, nodes: int) -> int:
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=url)
    start = (int(time.time()) // 60 - 24 * 60) * 60
    columns = ["cluster", "node", "gpu", "uuid", "window_start", "samples", "util_mean",
               "util_min", "util_max", "util_p95", "energy_mj", "job_id", "tenant"]
    total = 0
    try:
        for n in range(nodes):
            rows = [["bench", f"node-{n:03d}", g, f"GPU-{n}-{g}",
                     datetime.fromtimestamp(start + m * 60, UTC), 60, u, u, u, u, 21_000_000,
                     f"job-{n}-{m // 120}" if g < 2 else None, f"t{n % 5}" if g < 2 else None]
                    for g in range(GPUS_PER_NODE) for m in range(24 * 60)
                    for u in [float((n * 7 + g * 13 + m) % 100)]]
            client.insert("gpu_util_1m", rows, column_names=columns)
            total += len(rows)
    finally:
        client.close()
    return total


@contextlib.contextmanager
def _process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=out)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _wait(http: aiohttp.ClientSession, url: str, ok: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(url) as r:
                if r.status == 200 and ok(await r.json()):
                    return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {timeout}s")


async def _load(http: aiohttp.ClientSession, url: str, seconds: float,
                max_requests: int) -> tuple[float, list[float], int]:
    """CLIENTS workers request ``url`` back to back; (elapsed, latencies, errors)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline and len(latencies) < max_requests:
            t = time.perf_counter()
            async with http.get(url) as r:
                await r.read()
                errors += r.status != 200
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return time.perf_counter() - start, latencies, errors


def _p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


async def _measure(base: str, quick: bool, nodes: int, rows: int) -> list[Result]:
    seconds, cap = (3.0, 5_000) if quick else (10.0, 50_000)
    now = int(time.time())
    targets = [
        ("cluster summary", "/api/v1/cluster", f"{nodes * GPUS_PER_NODE} GPUs, 200 queued"),
        ("one-day history, hourly by node",
         f"/api/v1/history/utilization?from={now - 86400}&to={now}&step=3600&group_by=node",
         "from the hourly rollup"),
        ("one-day history, 5-min by node",
         f"/api/v1/history/utilization?from={now - 86400}&to={now}&step=300&group_by=node",
         f"scans {rows:,} per-minute rows"),
        ("job detail with measured usage", "/api/v1/jobs/run-3",
         "usage per GPU from gpu_util_1m over the last 31 days (start unknown)"),
        ("one-day tenant waste, hourly",
         f"/api/v1/tenants/t1/waste?from={now - 86400}&to={now}&step=3600",
         "5 queries: the hourly rollup, v_reclaims, v_job_rightsizing"),
    ]
    results: list[Result] = []
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as http:
        await _wait(http, base + "/api/v1/cluster",
                    lambda b: b["gpus"] == nodes * GPUS_PER_NODE and b["queue_depth"] == 200)
        for name, path, note in targets:
            await _load(http, base + path, 0.5, 200)  # warm up
            elapsed, latencies, errors = await _load(http, base + path, seconds, cap)
            extra = f"; {errors} errors" if errors else ""
            results += [
                Result("api", f"{name}: throughput, {CLIENTS} clients",
                       len(latencies) / elapsed, "req/s", note=note + extra),
                Result("api", f"{name}: p99 latency, {CLIENTS} clients", _p99(latencies),
                       "ms", note=f"{len(latencies)} requests"),
            ]
    return results


def run(quick: bool) -> list[Result]:
    nodes = 16 if quick else 64
    history_nodes = 4 if quick else 16
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        return _run_in(Path(tmp), quick, nodes, history_nodes)


def _run_in(tmp: Path, quick: bool, nodes: int, history_nodes: int) -> list[Result]:
    from services.warehouse.testing import migrated, start_warehouse, stop_warehouse, url

    broker = None
    bootstrap = os.environ.get("GPUFLEET_KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = LocalKafka(data=tmp / "kafka", port=free_port(), controller_port=free_port())
        broker.start()
        bootstrap = broker.bootstrap
    wh_port, api_port = free_port(), free_port()
    warehouse = start_warehouse(tmp / "warehouse", wh_port)
    try:
        migrated(wh_port)
        rows = _fill_warehouse(url(wh_port), history_nodes)
        bus = BusSettings(kafka_bootstrap=bootstrap, topic_prefix=f"bench{int(time.time())}",
                          cluster="bench")
        asyncio.run(create_topics(bus, replication_factor=1, partitions=1))
        asyncio.run(_publish_fleet(bus, nodes))
        env = {**os.environ, "GPUFLEET_KAFKA_BOOTSTRAP": bootstrap, "GPUFLEET_CLUSTER": "bench",
               "GPUFLEET_TOPIC_PREFIX": bus.topic_prefix, "GPUFLEET_API_PORT": str(api_port),
               "GPUFLEET_CLICKHOUSE_URL": url(wh_port), "GPUFLEET_LOG_LEVEL": "WARNING"}
        cmd = [sys.executable, "-m", "gpufleet.cli", "api"]
        with _process(cmd, env, tmp / "api.log"):
            return asyncio.run(_measure(f"http://127.0.0.1:{api_port}", quick, nodes, rows))
    finally:
        stop_warehouse(warehouse)
        if broker is not None:
            broker.stop()
