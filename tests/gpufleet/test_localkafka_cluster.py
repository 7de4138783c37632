"""Three combined KRaft nodes on free ports: a topic of replication factor 3 with
min.insync.replicas=2 takes writes with one node killed, and the node rejoins its ISR."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from gpufleet.localkafka import LocalKafkaCluster

pytestmark = pytest.mark.integration


async def _isr(admin: AIOKafkaAdminClient, name: str) -> list[int]:
    described: Any = await admin.describe_topics([name])
    return sorted(described[0]["partitions"][0]["isr"])


async def _send_all(bootstrap: str, name: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=True, request_timeout_ms=10000)
    await producer.start()
    try:
        for i in range(n):
            await asyncio.wait_for(producer.send_and_wait(name, f"m{i}".encode()), 30)
    finally:
        await producer.stop()


async def test_one_node_killed_and_brought_back(tmp_path: Path) -> None:
    cluster = LocalKafkaCluster(tmp_path)
    await asyncio.to_thread(cluster.start)
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("t", 1, 3)])
            await _send_all(cluster.bootstrap, "t", 5)
            assert await _isr(admin, "t") == [1, 2, 3]
            text = cluster.nodes[0].data.joinpath("server.properties").read_text()
            assert "min.insync.replicas=2" in text and "controller.quorum.voters=1@" in text

            assert cluster.kill(2, signal.SIGKILL)
            # two of three in sync: writes that need all in-sync replicas still go through
            await _send_all(",".join(n.bootstrap for n in cluster.nodes[:2]), "t", 5)

            await asyncio.to_thread(cluster.restart, 2)
            deadline = time.monotonic() + 60
            while await _isr(admin, "t") != [1, 2, 3]:
                assert time.monotonic() < deadline, "node 3 never rejoined the ISR"
                await asyncio.sleep(0.5)
        finally:
            await admin.close()
    finally:
        await asyncio.to_thread(cluster.stop)
