"""Feeding the live state from the topics: one consumer without a group, assigned by hand.

Compacted topics (scheduler state, node inventory, right-sizing) and the GPU drains are read
from their beginning; the others from a bounded tail (the last N records of each partition), so
a restarted api catches up on recent jobs and the latest samples without reading a day of
telemetry.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from aiokafka import AIOKafkaConsumer

from gpufleet.bus import DeadLetters, make_consumer, missing_topics, partitions, short_name
from gpufleet.ops import Metrics
from gpufleet.retry import Outage, kafka_transient, retrying
from services.api.config import ApiSettings
from services.api.state import LiveState

log = logging.getLogger(__name__)

COMPACTED = ("scheduler.state", "nodes", "jobs.rightsizing")
# Low-rate topics read whole, like the compacted ones: a GPU drained a week ago is drained now.
WHOLE = ("gpu.drains",)
TAILED = ("gpu.samples", "jobs.requests", "jobs.placements", "jobs.events", "alerts",
          "reclaims")


def tail_of(settings: ApiSettings, name: str) -> int | None:
    """How many records back to start in each partition of a topic; None: from the beginning."""
    if name in COMPACTED or name in WHOLE:
        return None
    return settings.api_samples_tail if name == "gpu.samples" else settings.api_events_tail


async def assign_and_seek(consumer: AIOKafkaConsumer, settings: ApiSettings) -> None:
    names = (*COMPACTED, *WHOLE, *TAILED)
    parts = await partitions(settings, names)
    for name in missing_topics(settings, names, parts):
        log.warning("topic %s not found; the api will not show its data", name)
    consumer.assign(parts)
    begin = await consumer.beginning_offsets(parts)
    end = await consumer.end_offsets(parts)
    for tp in parts:
        back = tail_of(settings, short_name(settings, tp.topic))
        start = begin[tp] if back is None else max(begin[tp], end[tp] - back)
        consumer.seek(tp, start)


async def feed(state: LiveState, settings: ApiSettings, consumer: AIOKafkaConsumer,
               letters: DeadLetters, metrics: Metrics, ready: asyncio.Event) -> None:
    """Apply every record to the state until cancelled. A record to dead-letter while the
    broker is away waits for it (the feed stops there rather than skip it)."""
    await assign_and_seek(consumer, settings)
    ready.set()
    outage = Outage("broker", metrics, service="api")
    while True:
        batches = await consumer.getmany(timeout_ms=500, max_records=5000)
        state.expire_orphans()
        for tp, records in batches.items():
            name = short_name(settings, tp.topic)
            for record in records:
                await retrying(outage, kafka_transient,
                               functools.partial(letters.handle, record, state.apply))
            metrics.inc("api_messages_in_total", len(records), help="records read", topic=name)
            metrics.observe("api_batch_size", len(records), help="records per fetch", topic=name)
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - await consumer.position(tp))
                metrics.set("api_consumer_lag", lag, help="records behind the log end",
                            topic=name, partition=str(tp.partition))
        metrics.set("api_dead_letters", letters.count, help="records sent to the dlq")


def make_reader(settings: ApiSettings) -> AIOKafkaConsumer:
    """A consumer of no group (nothing to commit: the api's state is only a cache) that sees
    only committed transactions."""
    return make_consumer(settings, (), group_id=None)
