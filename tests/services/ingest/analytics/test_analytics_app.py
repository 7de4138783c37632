"""Integration, on the real broker: the analytics worker warns an idle job and drains a GPU
with an XID; killed with SIGKILL once its offsets are committed, and started again, it holds
the state its changelogs kept: it reclaims the job on time and returns the GPU, and every
decision is the one the core makes over the same inputs without a crash."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from analytics_builders import analytics, inventory, placement, window

from gpufleet.bus import make_producer, topic
from gpufleet.config import BusSettings
from gpufleet.contracts import (
    GpuDrain,
    GpuHealth,
    GpuUndrain,
    Message,
    ReclaimRequest,
    ReclaimWarning,
    decoder_for,
    encode,
    key_of,
)
from gpufleet.localkafka import free_port
from services.ingest.analytics.app import INPUTS, TABLES

pytestmark = pytest.mark.integration

POLICIES = "default: name=test idle_timeout=3m min_util=5 grace=2m"
OUT = ("reclaims", "gpu.drains", "alerts", "jobs.rightsizing")
XID = {2: (GpuHealth.DEGRADED, "XID 79")}

# Before the crash: j1 (GPU 0) idles 4 minutes and is warned; j2 (GPUs 1, 2) is busy, and
# GPU 2 reports an XID: drained, j2 named.
# One stream reads several topics, in no set order between them: each stage is published
# once the worker has taken the one before (placements come long before windows in life too).
STAGES: list[list[Message]] = [
    [inventory(0, gpus=3), placement("j1", gpus=[0]), placement("j2", gpus=[1, 2])],
    [w for m in range(4) for w in (window(m, 1.0, "j1", gpu=0), window(m, 90.0, "j2", gpu=1),
                                   window(m, 90.0, "j2", gpu=2))],
    [inventory(4, XID, gpus=3)],
]
BEFORE = [m for stage in STAGES for m in stage]
# After it: j1 stays idle past its grace (reclaimed only if its streak since minute 0 was
# kept); GPU 2 is healthy from minute 5 and returns at minute 20 (only if its drain was kept).
AFTER: list[Message] = [
    *[window(m, 1.0, "j1", gpu=0) for m in range(4, 6)],
    inventory(5, gpus=3), inventory(20, gpus=3),
]


def env_of(bus: BusSettings, ops_port: int) -> dict[str, str]:
    return {**os.environ, "GPUFLEET_ANALYTICS_OPS_PORT": str(ops_port),
            "GPUFLEET_ANALYTICS_OPS_HOST": "127.0.0.1",
            "GPUFLEET_KAFKA_BOOTSTRAP": bus.kafka_bootstrap,
            "GPUFLEET_TOPIC_PREFIX": bus.topic_prefix, "GPUFLEET_CLUSTER": bus.cluster,
            "GPUFLEET_RECLAIM_POLICIES": POLICIES, "GPUFLEET_IDLE_AFTER_S": "180",
            "GPUFLEET_UNDRAIN_AFTER_S": "900", "GPUFLEET_RIGHTSIZING_EVERY_S": "3600",
            "GPUFLEET_INGEST_SESSION_TIMEOUT_MS": "6000", "GPUFLEET_LOG_LEVEL": "INFO"}


async def spawn(bus: BusSettings, log: Path, ops_port: int) -> asyncio.subprocess.Process:
    with open(log, "ab") as f:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.ingest.analytics", env=env_of(bus, ops_port),
            stdout=asyncio.subprocess.DEVNULL, stderr=f)


async def publish(bus: BusSettings, msgs: Sequence[Message]) -> None:
    producer = make_producer(bus)
    await producer.start()
    try:
        for msg in msgs:
            name = {"GpuUtilWindow": "gpu.util", "NodeInventory": "nodes",
                    "Placement": "jobs.placements"}[type(msg).__name__]
            await producer.send_and_wait(topic(bus, name), encode(msg), key=key_of(msg))
    finally:
        await producer.stop()


class Outputs:
    """Everything the worker decided, read from its output topics."""

    def __init__(self, bus: BusSettings) -> None:
        self.bus = bus
        self.seen: dict[str, Any] = {}
        self.consumer = AIOKafkaConsumer(*(topic(bus, n) for n in OUT),
                                         bootstrap_servers=bus.kafka_bootstrap,
                                         auto_offset_reset="earliest", group_id=None)

    async def until(self, done: Any, log: Path, proc: asyncio.subprocess.Process,
                    timeout: float = 90, fail: bool = True) -> None:
        async def read() -> None:
            while not done(list(self.seen.values())):
                assert proc.returncode is None, f"worker exited: {log.read_text()[-4000:]}"
                batches = await self.consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    name = next(n for n in OUT if topic(self.bus, n) == tp.topic)
                    for r in records:
                        msg = decoder_for(name).decode(r.value)
                        self.seen[msg.event_id] = msg
        try:
            await asyncio.wait_for(read(), timeout)
        except TimeoutError:
            if not fail:
                return
            pytest.fail(f"no such decisions in {timeout} s: {list(self.seen.values())}\n"
                        f"{log.read_text()[-4000:]}")


async def committed_all(bus: BusSettings, log: Path, timeout: float = 60) -> None:
    """Wait until the worker's group has committed every input record."""
    group = f"{bus.topic_prefix}.analytics"
    admin = AIOKafkaAdminClient(bootstrap_servers=bus.kafka_bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=bus.kafka_bootstrap)
    await admin.start()
    await probe.start()
    try:
        names = [topic(bus, n) for n in INPUTS if n != "jobs.events"]
        tps = [TopicPartition(t["topic"], p["partition"])
               for t in await admin.describe_topics(names) for p in t["partitions"]]
        assert len(tps) >= len(names)
        ends = await probe.end_offsets(tps)
        for _ in range(int(timeout * 2)):
            try:
                offsets = await admin.list_consumer_group_offsets(group)
            except KafkaError:  # the group's coordinator is not there yet
                offsets = {}
            if all(tp in offsets and offsets[tp].offset >= ends[tp] for tp in tps if ends[tp]):
                return
            await asyncio.sleep(0.5)
        pytest.fail(f"offsets never committed: {ends}\n{log.read_text()[-4000:]}")
    finally:
        await probe.stop()
        await admin.close()


async def ops(port: int) -> tuple[int, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(f"http://127.0.0.1:{port}/readyz") as ready:
            status = ready.status
        async with http.get(f"http://127.0.0.1:{port}/metrics") as metrics:
            return status, await metrics.text()


def expected_decisions() -> dict[str, Message]:
    """What the core decides over the same inputs, without a crash."""
    core = analytics(POLICIES, idle_after_s=180.0, undrain_after_s=900.0,
                     rightsizing_every_s=3600.0, settle_s=90.0)
    return {m.event_id: m for msg in [*BEFORE, *AFTER] for m in core.on_message(msg)}


async def test_sigkill_then_restart_restores_tables_and_makes_the_same_decisions(
        bus: BusSettings, tmp_path: Path) -> None:
    log = tmp_path / "analytics.log"
    out = Outputs(bus)
    await out.consumer.start()
    ops_port = free_port()
    first = await spawn(bus, log, ops_port)
    try:
        for stage in STAGES:
            await publish(bus, stage)
            await committed_all(bus, log)
        await out.until(lambda ms: any(isinstance(m, ReclaimWarning) for m in ms)
                        and any(isinstance(m, GpuDrain) for m in ms), log, first)
        await committed_all(bus, log)
        first.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(first.wait(), 30) == -signal.SIGKILL
        assert not any(isinstance(m, ReclaimRequest | GpuUndrain) for m in out.seen.values())

        second = await spawn(bus, log, ops_port)
        try:
            await publish(bus, AFTER)
            await out.until(lambda ms: any(isinstance(m, ReclaimRequest) for m in ms)
                            and any(isinstance(m, GpuUndrain) for m in ms), log, second)
            want = expected_decisions()
            await out.until(lambda ms: set(want) <= {m.event_id for m in ms}, log, second)
            await out.until(lambda ms: False, log, second, timeout=3, fail=False)  # any more?
            ready, metrics = await ops(ops_port)
            assert ready == 200
            assert 'gpufleet_analytics_decisions_total{kind="ReclaimRequest"} 1.0' in metrics
        finally:
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 60) == 0, log.read_text()[-4000:]
    finally:
        if first.returncode is None:
            first.kill()
        await out.consumer.stop()

    assert {k: v for k, v in out.seen.items() if k not in want} == {}
    assert {k: v for k, v in want.items() if k not in out.seen} == {}
    assert out.seen == want
    [reclaim] = [m for m in out.seen.values() if isinstance(m, ReclaimRequest)]
    assert (reclaim.job_id, reclaim.action, reclaim.idle_since) == ("j1", "requeue",
                                                                    window(0, 0).window_start)
    [drain] = [m for m in out.seen.values() if isinstance(m, GpuDrain)]
    assert (drain.gpu, drain.jobs) == (2, ["j2"])
    # the state came back from the changelogs: they hold it
    probe = AIOKafkaConsumer(bootstrap_servers=bus.kafka_bootstrap)
    await probe.start()
    try:
        changelogs = [f"{bus.topic_prefix}.analytics-{t}-changelog" for t in TABLES]
        ends = await probe.end_offsets([TopicPartition(c, 0) for c in changelogs])
        assert ends[TopicPartition(changelogs[list(TABLES).index("drains")], 0)] > 0
    finally:
        await probe.stop()


async def test_topics_of_their_real_partition_counts(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The one stream mixes topics of 6 and 3 partitions; the global tables take it."""
    from gpufleet.topics import create_topics

    bus = BusSettings(kafka_bootstrap=kafka_bootstrap, cluster="test",
                      topic_prefix=f"p{os.urandom(5).hex()}")
    await create_topics(bus, replication_factor=1)  # each topic's own partition count
    log = tmp_path / "analytics.log"
    out = Outputs(bus)
    await out.consumer.start()
    worker = await spawn(bus, log, free_port())
    try:
        for stage in STAGES:
            await publish(bus, stage)
            await committed_all(bus, log)
        await out.until(lambda ms: any(isinstance(m, ReclaimWarning) for m in ms)
                        and any(isinstance(m, GpuDrain) and m.jobs == ["j2"] for m in ms),
                        log, worker)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 60) == 0, log.read_text()[-4000:]
        await out.consumer.stop()
