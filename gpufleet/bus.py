"""Kafka helpers that every service uses: producer, consumer, starting a client while the
broker may be away, listing partitions, decode-or-dead-letter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from gpufleet.config import BusSettings
from gpufleet.contracts import (
    TOPIC_BY_NAME,
    DeadLetter,
    Message,
    clip,
    decoder_for,
    encode,
    envelope_version,
    key_of,
    topic_name,
    version_problem,
)
from gpufleet.retry import kafka_transient

log = logging.getLogger(__name__)


def topic(settings: BusSettings, name: str) -> str:
    return topic_name(name, settings.topic_prefix)


def short_name(settings: BusSettings, full: str) -> str:
    """``gpufleet.gpu.samples`` -> ``gpu.samples``."""
    prefix = settings.topic_prefix + "." if settings.topic_prefix else ""
    return full[len(prefix):] if full.startswith(prefix) else full


def make_producer(settings: BusSettings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer: acks from all in-sync replicas, lz4-compressed batches."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": "gpufleet",
        "enable_idempotence": True,
        "acks": "all",
        "compression_type": "lz4",
        "linger_ms": 5,
        "max_batch_size": 1 << 20,
        "max_request_size": 8 << 20,
    }
    opts.update(overrides)
    return AIOKafkaProducer(**opts)


def make_consumer(
    settings: BusSettings, names: Iterable[str], group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer of the named topics with manual commits (commit after the work is done).

    It reads committed records only: what a transaction that was rolled back (a scheduler that
    crashed or was fenced mid-cycle) sent is never seen.
    """
    opts: dict[str, Any] = {
        "isolation_level": "read_committed",
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": group_id,
        "client_id": f"gpufleet-{group_id or 'reader'}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": 4 << 20,
    }
    opts.update(overrides)
    return AIOKafkaConsumer(*(topic(settings, n) for n in names), **opts)


def make_admin(settings: BusSettings, request_timeout_s: float = 10.0) -> AIOKafkaAdminClient:
    """An admin client (not started) whose requests each have a deadline."""
    return AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                               client_id="gpufleet-admin",
                               request_timeout_ms=int(request_timeout_s * 1000))


async def partitions_of(admin: AIOKafkaAdminClient,
                        topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of these topics (full names), in order; a topic that does not exist
    has none. The admin client's public ``describe_topics`` asks the broker each time."""
    names = list(topics)
    if not names:
        return []
    found: dict[str, list[int]] = {}
    for desc in await admin.describe_topics(names):
        name = desc.get("topic", desc.get("name"))
        found[name] = sorted(p.get("partition_index", p.get("partition"))
                             for p in desc.get("partitions", ()))
    return [TopicPartition(name, p) for name in names for p in found.get(name, ())]


async def partitions(settings: BusSettings, names: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the named topics (short names, as in ``TOPICS``), asked through an
    admin client of its own that is closed again (a broker that is away raises KafkaError)."""
    admin = make_admin(settings)
    try:
        await admin.start()
        return await partitions_of(admin, (topic(settings, n) for n in names))
    finally:
        await admin.close()


def missing_topics(settings: BusSettings, names: Iterable[str],
                   found: Iterable[TopicPartition]) -> list[str]:
    """The topics of ``names`` (short names) that have no partition in ``found``."""
    have = {tp.topic for tp in found}
    return [name for name in names if topic(settings, name) not in have]


async def publish(
    producer: AIOKafkaProducer, settings: BusSettings, name: str, msg: Message
) -> None:
    """Send one message to a topic and wait until the broker has it."""
    await producer.send_and_wait(topic(settings, name), encode(msg), key=key_of(msg))


Factory = Callable[[], Any]  # makes a Kafka client (not started)


async def connect(factory: Factory, stop: asyncio.Event, retry_s: float = 2.0,
                  timeout_s: float = 30.0) -> Any | None:
    """Start a producer (or consumer) from ``factory``, retrying while Kafka is unreachable;
    None if ``stop`` came first. Each start has a deadline. A Kafka error that retrying cannot
    fix (a refused login, a wrong setting) is raised."""
    while not stop.is_set():
        client = factory()
        try:
            async with asyncio.timeout(timeout_s):
                await client.start()
            return client
        except (KafkaError, TimeoutError) as e:
            if isinstance(e, KafkaError) and not kafka_transient(e):
                await stop_quietly(client, timeout_s)
                raise
            log.warning("Kafka not reachable (%s); retrying in %.0fs", e or "timed out",
                        retry_s)
            await stop_quietly(client, timeout_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), retry_s)
    return None



async def stop_quietly(client: Any, timeout_s: float = 10.0) -> None:
    """Stop a Kafka client that may be half broken (its broker away) without hanging on it;
    closing only, so a failure is logged at DEBUG (the error that matters is raised already)."""
    try:
        async with asyncio.timeout(timeout_s):
            await client.stop()
    except Exception as e:
        log.debug("stopping a Kafka client: %s", e)


T = TypeVar("T")


class DeadLetters:
    """Decodes records of known topics; what does not decode, or is of a newer schema version,
    or makes the consumer fail, goes to the dead-letter topic with the reason. Without a
    producer the letters are only logged (and counted)."""

    def __init__(self, producer: AIOKafkaProducer | None, settings: BusSettings,
                 consumer: str) -> None:
        self._producer = producer
        self._settings = settings
        self._consumer = consumer
        self.count = 0

    def decode(self, record: ConsumerRecord[bytes, bytes]) -> tuple[Any, str | None]:
        """``(message, None)``, or ``(None, reason)`` when the record is unusable."""
        name = short_name(self._settings, record.topic)
        if name not in TOPIC_BY_NAME:
            return None, f"no contract for topic {record.topic!r}"
        if record.value is None:
            return None, "empty value (tombstone)"
        try:
            msg = decoder_for(name).decode(record.value)
        except msgspec.DecodeError as e:
            return None, version_problem(envelope_version(record.value)) or (
                f"does not decode as {name}: {e}")
        reason = version_problem(msg.schema)
        return (None, reason) if reason is not None else (msg, None)

    async def send(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        """Put a record on the dead-letter topic with its reason, and log it."""
        self.count += 1
        log.warning(
            "dead letter from %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason
        )
        if self._producer is None:
            return
        letter = DeadLetter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            reason=clip(reason),
            consumer=self._consumer,
        )
        dlq = topic(self._settings, "dlq")
        key = key_of(letter)
        try:
            await self._producer.send_and_wait(dlq, encode(letter), key=key)
        except KafkaError as e:
            # Most likely too large once base64-encoded: keep the coordinates and the reason,
            # so the record can still be found in its own topic; never stop the consumer.
            log.error("dead letter too large or refused (%s); sending it without its bytes", e)
            letter.key = letter.value = None
            letter.reason = clip(f"{reason} (original bytes left out: {type(e).__name__})")
            await self._producer.send_and_wait(dlq, encode(letter), key=key)

    async def decode_or_dead_letter(self, record: ConsumerRecord[bytes, bytes]) -> Any | None:
        """The decoded message, or ``None`` after sending the record to the dead-letter topic."""
        msg, reason = self.decode(record)
        if reason is not None:
            await self.send(record, reason)
            return None
        return msg

    async def failed(self, record: ConsumerRecord[bytes, bytes], error: Exception) -> None:
        """File a record whose handling raised: the consumer names itself, and goes on."""
        log.error("%s failed on %s[%d]@%d", self._consumer, record.topic, record.partition,
                  record.offset, exc_info=error)
        await self.send(record, f"{self._consumer} failed on this message: "
                                f"{type(error).__name__}: {error}")

    async def guard(self, record: ConsumerRecord[bytes, bytes], handle: Callable[[Any], T],
                    msg: Any) -> T | None:
        """``handle(msg)``; if it raises, the record is dead-lettered and ``None`` returned."""
        try:
            return handle(msg)
        except Exception as e:
            await self.failed(record, e)
            return None

    async def guard_async(self, record: ConsumerRecord[bytes, bytes],
                          handle: Callable[[Any], Awaitable[T]], msg: Any) -> T | None:
        """``await handle(msg)``; if it raises, the record is dead-lettered, ``None`` returned."""
        try:
            return await handle(msg)
        except Exception as e:
            await self.failed(record, e)
            return None

    async def handle(self, record: ConsumerRecord[bytes, bytes],
                     handle: Callable[[Any], T]) -> T | None:
        """Decode a record and hand it to ``handle``; a record that does not decode, or that
        ``handle`` fails on, goes to the dead-letter topic (``None`` is returned)."""
        msg = await self.decode_or_dead_letter(record)
        return None if msg is None else await self.guard(record, handle, msg)
