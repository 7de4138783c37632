"""The outbox through a broker stop and start: bounded memory, drops counted, then delivery.

This test runs a broker of its own (``own_broker``) so that it can stop it without disturbing
the session's broker. The producer's deliveries wedge during the outage (aiokafka retries a
batch for a known leader for ever): the sender's deadline replaces it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gpufleet.bus import make_consumer, make_producer
from gpufleet.config import BusSettings
from gpufleet.contracts import GpuSample, NodeSample, decoder_for
from gpufleet.localkafka import LocalKafka
from gpufleet.outbox import Outbox
from gpufleet.topics import create_topics

pytestmark = pytest.mark.integration

BOUND = 5


def sample(node: str, seq: int) -> NodeSample:
    return NodeSample(cluster="t", node=node, seq=seq,
                      gpus=[GpuSample(index=i, uuid=f"GPU-{i}", util_gpu=50.0) for i in range(8)])


async def until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.05)


async def test_publisher_survives_a_broker_restart_with_bounded_memory(
    own_broker: LocalKafka,
) -> None:
    settings = BusSettings(kafka_bootstrap=own_broker.bootstrap, topic_prefix="outage",
                           cluster="t")
    await create_topics(settings, replication_factor=1, partitions=1)
    publisher = Outbox(settings, lambda: make_producer(
        settings, request_timeout_ms=1500, retry_backoff_ms=100, linger_ms=0),
        buffer_samples=BOUND, batch=BOUND, delivery_timeout_s=5)
    stop = asyncio.Event()
    sender = asyncio.create_task(publisher.run(stop, flush_timeout_s=10))
    offered = 0

    def offer() -> None:
        nonlocal offered
        offered += 1
        publisher.offer_sample(sample("n1", offered))

    for _ in range(3):
        offer()
    await until(lambda: publisher.sent == 3)

    await asyncio.to_thread(own_broker.stop)
    most_held = 0
    for _ in range(40):  # 40 samples into an outage that holds at most 2 x BOUND
        offer()
        most_held = max(most_held, publisher.buffered + publisher.in_flight)
        await asyncio.sleep(0.05)
    assert publisher.dropped > 0
    assert most_held <= 2 * BOUND

    await asyncio.to_thread(own_broker.start)
    await until(lambda: publisher.buffered == 0 and publisher.in_flight == 0, timeout=60)
    offer()  # and a fresh one after the outage
    stop.set()
    await sender

    delivered = await read_all(settings, publisher.sent)
    seqs = [s.seq for s in delivered]
    assert seqs == sorted(seqs) and seqs[-1] == offered and seqs[:3] == [1, 2, 3]
    # every sample offered is either delivered or counted as dropped in a delivered one
    assert len(delivered) + sum(s.dropped for s in delivered) == offered
    assert any(s.dropped for s in delivered[3:])


async def read_all(settings: BusSettings, n: int) -> list[NodeSample]:
    consumer = make_consumer(settings, ["gpu.samples"], group_id=None)
    await consumer.start()
    out: list[NodeSample] = []
    try:
        async with asyncio.timeout(30):
            while len(out) < n:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    out.extend(decoder_for("gpu.samples").decode(r.value) for r in records)
    finally:
        await consumer.stop()
    return out
