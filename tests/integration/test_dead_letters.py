"""Dead letters against the real broker: keyed by the record and the consumer, so that the
same bad record filed again (a restart, a second instance) has the same key, and the
compacted dead-letter topic keeps one letter per record and consumer."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from gpufleet.bus import DeadLetters, make_consumer, make_producer, topic
from gpufleet.config import BusSettings
from gpufleet.contracts import DeadLetter, decoder_for

pytestmark = pytest.mark.integration


async def take(consumer: AIOKafkaConsumer, n: int, timeout: float = 20.0) -> list[object]:
    out: list[object] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(records)
    return out


async def test_a_record_filed_again_has_the_same_key(bus: BusSettings) -> None:
    producer = make_producer(bus)
    source = make_consumer(bus, ["jobs.events"], group_id=None)
    dlq = make_consumer(bus, ["dlq"], group_id=None)
    await producer.start()
    await source.start()
    await dlq.start()
    try:
        events = topic(bus, "jobs.events")
        await producer.send_and_wait(events, b'{"job_id":"j","state":"failed","exit_code":'
                                             b'1180591620717411303424}', key=b"j", partition=0)
        await producer.send_and_wait(events, b'{"job_id":"k","state":"failed","schema":9}',
                                     key=b"k", partition=0)
        records = await take(source, 2)

        def boom(msg: object) -> None:
            raise ValueError("no")

        # ingest before and after a restart, and the api once
        for consumer in ("ingest", "ingest", "api"):
            letters = DeadLetters(producer, bus, consumer)
            for r in records:
                assert await letters.handle(r, boom) is None  # type: ignore[arg-type]
        # a message that decodes but fails its handler
        letters = DeadLetters(producer, bus, "scheduler")
        ok = await producer.send_and_wait(events, b'{"job_id":"m","state":"failed"}', key=b"m",
                                          partition=0)
        [good] = [r for r in await take(source, 1) if r.offset == ok.offset]  # type: ignore[attr-defined]
        assert await letters.handle(good, boom) is None

        got = await take(dlq, 7)
        keys = [r.key.decode() for r in got]  # type: ignore[attr-defined]
        letters_ = [decoder_for("dlq").decode(r.value) for r in got]  # type: ignore[attr-defined]
        assert all(isinstance(d, DeadLetter) for d in letters_)
        assert sorted(set(keys)) == sorted([f"{events}/0@0 ingest", f"{events}/0@1 ingest",
                                            f"{events}/0@0 api", f"{events}/0@1 api",
                                            f"{events}/0@2 scheduler"])
        assert keys.count(f"{events}/0@0 ingest") == 2  # the repeat: one letter once compacted
        reasons = {k: d.reason for k, d in zip(keys, letters_, strict=True)}
        assert "Expected `int` <= 2147483647 - at `$.exit_code`" in reasons[f"{events}/0@0 api"]
        assert "schema version 9 is newer" in reasons[f"{events}/0@1 api"]
        assert reasons[f"{events}/0@2 scheduler"] == (
            "scheduler failed on this message: ValueError: no")
    finally:
        await dlq.stop()
        await source.stop()
        await producer.stop()


async def test_the_dead_letter_topic_is_compacted_and_expires(bus: BusSettings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bus.kafka_bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(20):  # the topic was created last: wait until it is known
            while True:
                [response] = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, topic(bus, "dlq"))])
                if response.resources[0][0] == 0:
                    break
                await asyncio.sleep(0.1)
        entries = {e[0]: e[1] for e in response.resources[0][4]}
        assert entries["cleanup.policy"] == "compact,delete"
        assert entries["retention.ms"] == str(7 * 24 * 3600 * 1000)
    finally:
        await admin.close()
