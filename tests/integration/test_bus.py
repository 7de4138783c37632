"""The bus helpers against the real broker."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from gpufleet.bus import (
    DeadLetters,
    make_consumer,
    make_producer,
    missing_topics,
    partitions,
    publish,
    topic,
)
from gpufleet.config import BusSettings
from gpufleet.contracts import (
    TOPICS,
    DeadLetter,
    GpuSample,
    JobSpec,
    NodeSample,
    SubmitJob,
    decoder_for,
)
from gpufleet.localkafka import LocalKafka, free_port
from gpufleet.topics import create_topics

pytestmark = pytest.mark.integration


async def take(consumer: AIOKafkaConsumer, n: int, timeout: float = 20.0) -> list[object]:
    out: list[object] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(records)
    return out


async def test_a_struct_round_trips_through_a_topic(bus: BusSettings) -> None:
    sample = NodeSample(cluster="test", node="node-1", gpus=[
        GpuSample(index=i, uuid=f"GPU-{i}", util_gpu=10.0 * i) for i in range(8)])
    producer = make_producer(bus)
    consumer = make_consumer(bus, ["gpu.samples"], group_id="rt")
    await producer.start()
    await consumer.start()
    try:
        await publish(producer, bus, "gpu.samples", sample)
        [record] = await take(consumer, 1)
        assert record.key == b"node-1"  # type: ignore[attr-defined]
        assert decoder_for("gpu.samples").decode(record.value) == sample  # type: ignore[attr-defined]
    finally:
        await consumer.stop()
        await producer.stop()


async def test_malformed_message_goes_to_dead_letters_and_consumer_goes_on(
    bus: BusSettings,
) -> None:
    good = SubmitJob(job=JobSpec(job_id="ok-1", gpus=1))
    producer = make_producer(bus)
    consumer = make_consumer(bus, ["jobs.requests"], group_id="dlq-test")
    dlq_reader = make_consumer(bus, ["dlq"], group_id=None)
    await producer.start()
    await consumer.start()
    await dlq_reader.start()
    try:
        requests = topic(bus, "jobs.requests")
        await producer.send_and_wait(requests, b"{not json", key=b"x")
        await producer.send_and_wait(requests, b'{"kind":"submit","job":{"job_id":""}}', key=b"y")
        await publish(producer, bus, "jobs.requests", good)
        letters = DeadLetters(producer, bus, consumer="dlq-test")
        decoded = [await letters.decode_or_dead_letter(r) for r in await take(consumer, 3)]
        await consumer.commit()
        assert decoded[:2] == [None, None]
        assert decoded[2] == good
        assert letters.count == 2

        dead = [decoder_for("dlq").decode(r.value) for r in await take(dlq_reader, 2)]  # type: ignore[attr-defined]
        assert all(isinstance(d, DeadLetter) for d in dead)
        assert [d.value for d in dead] == [b"{not json", b'{"kind":"submit","job":{"job_id":""}}']
        assert [d.key for d in dead] == [b"x", b"y"]
        assert {d.topic for d in dead} == {requests}
        assert [d.offset for d in dead] == [0, 1]
        assert "malformed" in dead[0].reason.lower()
        assert "length >= 1" in dead[1].reason
        assert dead[0].consumer == "dlq-test"
    finally:
        await dlq_reader.stop()
        await consumer.stop()
        await producer.stop()


async def test_topic_creation_is_idempotent(bus: BusSettings) -> None:
    again = BusSettings(kafka_bootstrap=bus.kafka_bootstrap, topic_prefix=bus.topic_prefix + "x")
    first = await create_topics(again, replication_factor=1, partitions=1)
    second = await create_topics(again, replication_factor=1, partitions=1)
    assert sorted(first) == sorted(f"{again.topic_prefix}.{t.name}" for t in TOPICS)
    assert second == []


async def test_compacted_topics_are_created_compacted(bus: BusSettings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bus.kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic(bus, "nodes"))])
        entries = {e[0]: e[1] for e in response.resources[0][4]}
        assert entries["cleanup.policy"] == "compact"
    finally:
        await admin.close()


def test_starting_the_broker_twice_is_harmless(local_broker: LocalKafka | None) -> None:
    if local_broker is None:
        pytest.skip("an outside broker was given by GPUFLEET_KAFKA_BOOTSTRAP")
    twin = LocalKafka(data=local_broker.data, port=local_broker.port,
                      controller_port=local_broker.controller_port)
    assert twin.start() is False
    assert twin.running_pid() == local_broker.running_pid()


async def test_consumers_never_see_what_a_rolled_back_transaction_sent(bus: BusSettings) -> None:
    txn = make_producer(bus, transactional_id=f"{bus.topic_prefix}-txn")
    plain = make_producer(bus)
    consumer = make_consumer(bus, ["jobs.events"], group_id="committed-only")
    await txn.start()
    await plain.start()
    await consumer.start()
    try:
        events = topic(bus, "jobs.events")
        await txn.begin_transaction()
        await txn.send_and_wait(events, b'{"job_id":"ghost","state":"placed"}')
        await txn.abort_transaction()
        await plain.send_and_wait(events, b'{"job_id":"real","state":"placed"}')
        records = await take(consumer, 1)
        await asyncio.sleep(0.5)
        records += [r for rs in (await consumer.getmany(timeout_ms=500)).values() for r in rs]
        assert [decoder_for("jobs.events").decode(r.value).job_id  # type: ignore[attr-defined]
                for r in records] == ["real"]
    finally:
        await consumer.stop()
        await plain.stop()
        await txn.stop()


async def test_a_dead_letter_too_large_for_the_broker_keeps_its_coordinates(
    bus: BusSettings,
) -> None:
    import os

    producer = make_producer(bus)
    consumer = make_consumer(bus, ["jobs.requests"], group_id="big-dlq")
    dlq_reader = make_consumer(bus, ["dlq"], group_id=None)
    await producer.start()
    await consumer.start()
    await dlq_reader.start()
    try:
        # fits the broker as it is, but not once base64-encoded inside a dead letter
        big = b"\xff" + os.urandom(900_000)
        await producer.send_and_wait(topic(bus, "jobs.requests"), big, key=b"big")
        letters = DeadLetters(producer, bus, consumer="big-dlq")
        [record] = await take(consumer, 1)
        assert await letters.decode_or_dead_letter(record) is None
        [dead] = [decoder_for("dlq").decode(r.value) for r in await take(dlq_reader, 1)]  # type: ignore[attr-defined]
        assert (dead.topic, dead.offset, dead.value) == (topic(bus, "jobs.requests"), 0, None)
        assert "original bytes left out" in dead.reason
        assert "does not decode" in dead.reason
    finally:
        await dlq_reader.stop()
        await consumer.stop()
        await producer.stop()


def test_up_refuses_a_port_that_another_program_holds(
    bus: BusSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    from gpufleet.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        monkeypatch.setenv("GPUFLEET_KAFKA_BOOTSTRAP", bus.kafka_bootstrap)
        monkeypatch.setenv("GPUFLEET_TOPIC_PREFIX", bus.topic_prefix)
        monkeypatch.setenv("GPUFLEET_WAREHOUSE_PORT", str(port))
        assert main(["up", "--only", "warehouse"]) == 1
    assert f"gpufleet up: warehouse: port {port} is already in use" in capsys.readouterr().err


async def test_partitions_are_listed_through_the_admin_client(kafka_bootstrap: str) -> None:
    """Every partition of each topic asked for, in order; a topic that is not there has none
    (and is named by ``missing_topics``); a broker that is not there raises."""
    settings = BusSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix="parts", cluster="t")
    absent = BusSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix="absent", cluster="t")
    await create_topics(settings, replication_factor=1, partitions=3)
    found = await partitions(settings, ["nodes", "gpu.samples"])
    samples, nodes = topic(settings, "gpu.samples"), topic(settings, "nodes")
    assert found == [*(TopicPartition(nodes, p) for p in range(3)),
                     *(TopicPartition(samples, p) for p in range(3))]
    assert missing_topics(settings, ["gpu.samples", "alerts"], found) == ["alerts"]
    assert await partitions(absent, ["nodes"]) == []
    assert await partitions(settings, []) == []
    with pytest.raises(KafkaError):
        await partitions(BusSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}"), ["nodes"])
