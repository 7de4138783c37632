"""The test harness: a real Kafka broker for the session, on free ports in a temporary folder,
unless GPUFLEET_KAFKA_BOOTSTRAP names one to use."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gpufleet.config import BusSettings
from gpufleet.localkafka import LocalKafka, free_port
from gpufleet.topics import create_topics


@pytest.fixture(scope="session")
def local_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka | None]:
    if os.environ.get("GPUFLEET_KAFKA_BOOTSTRAP"):
        yield None
        return
    broker = LocalKafka(
        data=Path(tmp_path_factory.mktemp("kafka")), port=free_port(), controller_port=free_port()
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_broker: LocalKafka | None) -> str:
    return local_broker.bootstrap if local_broker else os.environ["GPUFLEET_KAFKA_BOOTSTRAP"]


@pytest.fixture
async def bus(kafka_bootstrap: str) -> AsyncIterator[BusSettings]:
    """Settings with a topic prefix of this test's own, its topics created (1 partition each)."""
    settings = BusSettings(
        kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}", cluster="test"
    )
    await create_topics(settings, replication_factor=1, partitions=1)
    yield settings


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[LocalKafka]:
    """A broker of the test's own (free ports, a temporary folder), for a test that stops and
    starts it without disturbing the session's broker."""
    broker = LocalKafka(data=tmp_path / "kafka", port=free_port(), controller_port=free_port(),
                        heap="384m")
    await asyncio.to_thread(broker.start)
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)
