"""How fast a consumer gets through one topic of node samples: faust per event, faust
``stream.take`` batches, plain aiokafka ``getmany`` batches. Each decodes every record."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

from gpufleet.contracts import decoder_for

Decode = Callable[[bytes], Any]


async def faust_rate(bootstrap: str, topic: str, n: int, batch: int | None) -> float:
    """Records per second through a faust agent (``batch``: take(batch) instead of per event),
    timed from the first record to the n-th, so the app's start is not counted."""
    import faust

    app = faust.App(f"bench-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}",
                    store="memory://", web_enabled=False, consumer_auto_offset_reset="earliest")
    source = app.topic(topic, value_type=bytes, value_serializer="raw")
    decode = decoder_for("gpu.samples").decode
    done = asyncio.Event()
    seen = [0, 0.0]

    def count(k: int) -> None:
        if seen[0] == 0:
            seen[1] = time.perf_counter()
        seen[0] += k
        if seen[0] >= n:
            done.set()

    if batch is None:
        @app.agent(source, concurrency=1)
        async def per_event(stream: Any) -> None:
            async for value in stream:
                decode(value)
                count(1)
    else:
        @app.agent(source, concurrency=1)
        async def batches(stream: Any) -> None:
            async for values in stream.take(batch, within=0.5):
                for value in values:
                    decode(value)
                count(len(values))

    await app.start()
    try:
        await asyncio.wait_for(done.wait(), 300)
        return n / (time.perf_counter() - seen[1])
    finally:
        await app.stop()


async def aiokafka_rate(bootstrap: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"bench-{uuid.uuid4().hex[:8]}",
                                enable_auto_commit=False, max_partition_fetch_bytes=16 << 20)
    decode = decoder_for("gpu.samples").decode
    await consumer.start()
    try:
        seen, start = 0, 0.0
        while seen < n:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                if seen == 0:
                    start = time.perf_counter()
                for r in records:
                    decode(r.value)
                seen += len(records)
            await consumer.commit()
        return n / (time.perf_counter() - start)
    finally:
        await consumer.stop()
