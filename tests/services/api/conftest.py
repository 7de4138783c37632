"""Fixtures of the api tests: a running api on the real broker, with tokens of every role."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer

from gpufleet.bus import key_of, make_producer, publish, topic
from gpufleet.config import BusSettings
from gpufleet.contracts import Message, encode
from gpufleet.localkafka import free_port
from gpufleet.topics import create_topics
from services.api.app import create_app
from services.api.config import ApiSettings
from services.api.handling import LIVE_READY, STATE
from services.api.state import LiveState
from services.warehouse.testing import migrated, start_warehouse, stop_warehouse, url

VIEWER, SUBMITTER_A, SUBMITTER_B, ADMIN = "view-token-1", "sub-a-token", "sub-b-token", "admin-tok1"
TOKENS = f"{VIEWER}:viewer,{SUBMITTER_A}:submitter:team-a,{SUBMITTER_B}:submitter:team-b," \
         f"{ADMIN}:admin"


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@dataclass
class RunningApi:
    client: TestClient[Any, Any]
    bus: BusSettings
    producer: AIOKafkaProducer
    state: LiveState

    async def publish(self, name: str, *msgs: Message) -> None:
        for msg in msgs:
            if key_of(msg) is None:  # compacted topics refuse records without a key
                await self.producer.send_and_wait(topic(self.bus, name), encode(msg),
                                                  key=self.bus.cluster.encode())
            else:
                await publish(self.producer, self.bus, name, msg)

    async def get(self, path: str, token: str | None = ADMIN, **params: Any) -> ClientResponse:
        return await self.client.get(path, headers=auth(token), params=params or None)

    async def wait_for(self, path: str, predicate: Any, timeout: float = 15.0) -> Any:
        """GET ``path`` until ``predicate(body)`` holds; the last body."""
        body: Any = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            response = await self.get(path)
            body = await response.json() if response.status == 200 else None
            if body is not None and predicate(body):
                return body
            await asyncio.sleep(0.1)
        raise AssertionError(f"{path}: condition not met in {timeout}s; last body: {body}")


@pytest.fixture(scope="session")
def warehouse_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real warehouse (embedded chDB behind the ClickHouse HTTP interface), migrated."""
    port = free_port()
    proc = start_warehouse(tmp_path_factory.mktemp("warehouse") / "data", port)
    try:
        migrated(port)
        yield url(port)
    finally:
        stop_warehouse(proc)


def api_settings(bus: BusSettings, **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": bus.kafka_bootstrap, "topic_prefix": bus.topic_prefix,
        "cluster": bus.cluster, "api_tokens": TOKENS, "api_open_reads": False,
        "api_stream_interval_s": 0.2,
        "tenant_quotas": "team-a=8,team-b=8",
    }
    values.update(overrides)
    return ApiSettings(**values)


@contextlib.asynccontextmanager
async def start_api(bus: BusSettings, **overrides: Any) -> AsyncIterator[RunningApi]:
    app = create_app(api_settings(bus, **overrides))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    producer = make_producer(bus)
    await producer.start()
    try:
        await asyncio.wait_for(app[LIVE_READY].wait(), 20)
        yield RunningApi(client=client, bus=bus, producer=producer, state=app[STATE])
    finally:
        await producer.stop()
        await client.close()


@pytest.fixture
async def running_api(bus: BusSettings, warehouse_url: str) -> AsyncIterator[RunningApi]:
    """An api of this test's own, on a fresh topic prefix."""
    async with start_api(bus, clickhouse_url=warehouse_url) as api:
        yield api


@pytest.fixture(scope="module")
async def shared_api(kafka_bootstrap: str, warehouse_url: str) -> AsyncIterator[RunningApi]:
    """One api for a whole module of tests that do not depend on each other's data."""
    bus = BusSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"m{uuid.uuid4().hex[:10]}",
                      cluster="test")
    await create_topics(bus, replication_factor=1, partitions=1)
    async with start_api(bus, clickhouse_url=warehouse_url) as api:
        yield api
