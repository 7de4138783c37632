"""Helpers for the tests of the scheduler service on the real broker: its environment, its
process, readers of its topics and its /readyz."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer

from gpufleet.bus import topic
from gpufleet.config import BusSettings
from gpufleet.contracts import decoder_for
from gpufleet.localkafka import free_port

COMMAND = [sys.executable, "-m", "gpufleet.cli", "scheduler"]


def scheduler_env(bus: BusSettings, txn: str, **extra: str) -> dict[str, str]:
    """The scheduler's settings for a test; node leases are long unless a test sets them."""
    env = {**os.environ, "GPUFLEET_KAFKA_BOOTSTRAP": bus.kafka_bootstrap,
           "GPUFLEET_TOPIC_PREFIX": bus.topic_prefix, "GPUFLEET_CLUSTER": bus.cluster,
           "GPUFLEET_SCHEDULER_TRANSACTIONAL_ID": txn, "GPUFLEET_SCHEDULER_GROUP_ID": txn,
           "GPUFLEET_SCHEDULER_OPS_PORT": str(free_port()),
           "GPUFLEET_SCHEDULER_STATE_INTERVAL_S": "0.5",
           "GPUFLEET_SCHEDULER_NODE_LEASE_S": "600"}
    env.update({f"GPUFLEET_SCHEDULER_{k.upper()}": v for k, v in extra.items()})
    return env


def start(env: dict[str, str], log: Any = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(COMMAND, env=env, stdout=subprocess.DEVNULL, stderr=log)


@contextmanager
def scheduler(env: dict[str, str], log: Any = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = start(env, log)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def reader(bus: BusSettings, name: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(topic(bus, name), bootstrap_servers=bus.kafka_bootstrap,
                            isolation_level="read_committed", auto_offset_reset="earliest",
                            enable_auto_commit=False)


async def drain(consumer: AIOKafkaConsumer, name: str, timeout_ms: int = 200) -> list[Any]:
    """The messages that came in on ``consumer`` (of topic ``name``) within ``timeout_ms``."""
    out: list[Any] = []
    for records in (await consumer.getmany(timeout_ms=timeout_ms)).values():
        out += [decoder_for(name).decode(r.value) for r in records]
    return out


async def readyz(port: int) -> int | None:
    """The status of /readyz, or None while nothing answers."""
    try:
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{port}/readyz") as r:
            return r.status
    except aiohttp.ClientConnectionError:
        return None


async def wait_ready(port: int, status: int = 200, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while await readyz(port) != status:
            await asyncio.sleep(0.1)
