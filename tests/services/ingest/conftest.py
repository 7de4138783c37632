"""Fixtures of the ingest integration tests: a real warehouse (the embedded ClickHouse behind
its HTTP interface) for the session, settings per test, a worker running in this process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from gpufleet.config import BusSettings
from gpufleet.localkafka import free_port
from gpufleet.ops import Metrics
from services.ingest.config import IngestSettings
from services.ingest.driver import Worker


@pytest.fixture(scope="session")
def warehouse_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated warehouse: GPUFLEET_TEST_WAREHOUSE_URL, or one started for the session."""
    given = os.environ.get("GPUFLEET_TEST_WAREHOUSE_URL")
    if given:
        yield given
        return
    testing = pytest.importorskip("services.warehouse.testing")
    port = free_port()
    proc = testing.start_warehouse(Path(tmp_path_factory.mktemp("warehouse")) / "data", port)
    try:
        testing.migrated(port)
        yield testing.url(port)
    finally:
        testing.stop_warehouse(proc)


@pytest.fixture
def ch(warehouse_url: str) -> Iterator[Any]:
    client = clickhouse_connect.get_client(dsn=warehouse_url, autogenerate_session_id=False)
    yield client
    client.close()


@pytest.fixture
def settings(bus: BusSettings, warehouse_url: str) -> IngestSettings:
    return IngestSettings(
        kafka_bootstrap=bus.kafka_bootstrap, topic_prefix=bus.topic_prefix, cluster=bus.cluster,
        clickhouse_url=warehouse_url, ingest_group_id=f"ingest-{uuid.uuid4().hex[:8]}",
        batch_max_rows=2_000, batch_within_s=0.3, window_s=60, grace_s=5,
        idle_after_s=120, ingest_ops_port=0)


@dataclass
class Running:
    worker: Worker
    stop: asyncio.Event
    task: asyncio.Task[None]


@pytest.fixture
async def start_worker() -> AsyncIterator[Callable[[IngestSettings], Awaitable[Running]]]:
    running: list[Running] = []

    async def start(s: IngestSettings) -> Running:
        worker = Worker(s, Metrics())
        stop = asyncio.Event()
        r = Running(worker, stop, asyncio.create_task(worker.run(stop)))
        running.append(r)
        return r

    yield start
    for r in running:
        r.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(r.task, 30)
