"""One ingest worker: Kafka in, ClickHouse and Kafka out. Thin wiring around ``core``.

1. Consume samples, job events, placements and inventory in batches (one consumer per worker,
   a consumer group across workers; scale-out is more partitions and more workers).
2. Per partition: decode, check, dead-letter what is unusable, fold the rest into rows and
   windows. A partition's batch is cut by rows or time.
3. Flush: commit an intent (``progress.Mark``), insert each partition's rows with its
   de-duplication token, publish closed windows and alerts, then commit the end offset. Offsets
   move only after ClickHouse and Kafka have acknowledged: at-least-once in, exactly-once rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from gpufleet.bus import DeadLetters, make_consumer, make_producer, short_name, topic
from gpufleet.contracts import encode
from gpufleet.ops import Metrics

from .config import IngestSettings
from .core import Ingest, Params
from .jobfeed import JobFeed
from .partition import Part
from .progress import Mark, token
from .sink import ClickHouseSink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sealed:
    """A partition's batch, taken out of the worker's hands, and its two commits."""

    part: Part
    intent: OffsetAndMetadata
    done: OffsetAndMetadata

SOURCES = ("gpu.samples", "jobs.events", "jobs.placements", "nodes")


def params_of(s: IngestSettings) -> Params:
    return Params(window_s=s.window_s, grace_s=s.grace_s, max_future_s=s.max_future_s,
                  idle_util_threshold=s.idle_util_threshold, idle_after_s=s.idle_after_s,
                  job_retention_s=s.job_retention_s, energy_gap_s=s.energy_gap_s)


class Worker(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, settings: IngestSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.core = Ingest(params_of(settings), cluster=settings.cluster)
        self.sink = ClickHouseSink(settings.clickhouse_url)
        self.producer: AIOKafkaProducer = make_producer(settings)
        self.consumer: AIOKafkaConsumer = make_consumer(
            settings, (), settings.ingest_group_id, max_poll_records=20_000,
            session_timeout_ms=settings.ingest_session_timeout_ms,
            fetch_max_bytes=64 << 20, max_partition_fetch_bytes=16 << 20)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        self.feed = JobFeed(settings, self.core, self.admin)
        self.dead = DeadLetters(self.producer, settings, "ingest")
        self.parts: dict[TopicPartition, Part] = {}
        self.lock = asyncio.Lock()
        self.ready = False
        self._writing: asyncio.Task[None] | None = None
        self._poll_max = max(1, settings.batch_max_rows // 8)  # node messages hold ~8 GPUs

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.sink.start()
        await self.producer.start()
        await self.admin.start()
        await self.feed.start()
        self.consumer.subscribe([topic(self.settings, n) for n in SOURCES], listener=self)
        await self.consumer.start()
        self.ready = True
        last_flush = time.monotonic()
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=100, max_records=self._poll_max)
                async with self.lock:
                    for tp, records in batches.items():
                        part = self.parts.get(tp)
                        if part is not None:
                            await self._take(part, records)
                    rows = sum(p.rows for p in self.parts.values())
                    due = time.monotonic() - last_flush >= self.settings.batch_within_s
                    if rows >= self.settings.batch_max_rows or due:
                        await self._flush([p for p in self.parts.values() if p.end is None],
                                          wait=False)
                        last_flush = time.monotonic()
            async with self.lock:
                await self._flush([p for p in self.parts.values() if p.end is None])
        finally:
            self.ready = False
            await self._close()

    async def _close(self) -> None:
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing
        for closer in (self.consumer.stop, self.feed.stop, self.admin.close, self.producer.stop,
                       self.sink.close):
            with contextlib.suppress(Exception):
                await closer()

    async def readiness(self) -> dict[str, bool]:
        return {"consuming": self.ready}

    # -- rebalancing --------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.lock:
            gone = [self.parts[tp] for tp in revoked if tp in self.parts]
            with contextlib.suppress(Exception):
                await self._flush([p for p in gone if p.end is None])
            for p in gone:
                del self.parts[p.tp]
                self.core.forget(p.tp)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if not assigned:
            return
        async with self.lock:
            offsets = await self.admin.list_consumer_group_offsets(
                self.settings.ingest_group_id, partitions=list(assigned))
            for tp in assigned:
                om = offsets.get(tp)
                committed = om.offset if om is not None and om.offset >= 0 else None
                mark = Mark.decode(om.metadata if om is not None else None)
                self._resume(tp, committed, mark)

    def _resume(self, tp: TopicPartition, committed: int | None, mark: Mark) -> None:
        """Start a partition at its committed offset, re-reading first to rebuild windows."""
        part = self.parts[tp] = Part(tp, short_name(self.settings, tp.topic))
        self.core.forget(tp)
        if committed is None:
            return
        part.start = part.next = part.replay_until = committed
        part.end = mark.end
        start = committed
        if part.name == "gpu.samples":
            if mark.replay is not None and mark.replay < committed:
                start = mark.replay
            self.core.partition(tp).watermark = mark.watermark
            part.resume = (start, mark.watermark)
        self.consumer.seek(tp, start)
        log.info("resume %s[%d] at %d (re-read from %d, intent end %s)", tp.topic,
                 tp.partition, committed, start, mark.end)

    # -- records ------------------------------------------------------------------------

    async def _take(self, part: Part, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        now = time.time()
        for rec in records:
            if part.end is not None and rec.offset >= part.end:
                await self._flush([part])  # the batch named by the intent is complete
            if part.start is None:
                part.start = rec.offset
            if rec.offset < part.replay_until:
                self._rebuild(part, rec, now)
                continue
            if part.replaying:
                self.core.close_windows(part.tp, emit=False)
                part.replaying = False
            await self._one(part, rec, now)
            part.next = rec.offset + 1
        if part.end is not None and part.next == part.end:
            await self._flush([part])

    def _rebuild(self, part: Part, rec: ConsumerRecord[bytes, bytes], now: float) -> None:
        part.replaying = True
        if part.name != "gpu.samples":
            return
        msg, reason = self.dead.decode(rec)
        if reason is None and self.core.sample_reason(msg, now) is None:
            self.core.add_sample(part.tp, msg, rec.offset, None)

    async def _one(self, part: Part, rec: ConsumerRecord[bytes, bytes], now: float) -> None:
        msg, reason = self.dead.decode(rec)
        if reason is None:
            reason = part.check(self.core, msg, now)
        if reason is not None:
            self.metrics.inc("ingest_dead_letters_total", help="records sent to the dlq",
                             topic=part.name)
            await self.dead.send(rec, reason)
            return
        await self.dead.guard(rec, lambda m: part.add(self.core, m, rec.offset), msg)

    # -- flushing -----------------------------------------------------------------------

    async def _flush(self, parts: list[Part], wait: bool = True) -> None:
        """Seal the parts' batches now and write them; the write of the previous flush is
        awaited first, so writes and commits stay in order. ``wait=False`` lets the worker
        take the next records while ClickHouse stores this batch."""
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing
        sealed = self._seal(parts)
        if sealed:
            self._writing = asyncio.create_task(self._write(sealed))
            if wait:
                writing, self._writing = self._writing, None
                await writing

    def _seal(self, parts: list[Part]) -> list[Sealed]:
        out = []
        for p in parts:
            if p.start is None or p.next <= p.start:
                continue
            if p.name == "gpu.samples" and not p.replaying:
                p.derived.append(self.core.close_windows(p.tp))
            intent = Mark(end=p.next, replay=p.resume[0], watermark=p.resume[1])
            p.resume = self._resume_point(p)
            done = Mark(replay=p.resume[0], watermark=p.resume[1])
            out.append(Sealed(copy.copy(p), OffsetAndMetadata(p.start, intent.encode()),
                              OffsetAndMetadata(p.next, done.encode())))
            p.reset()
        return out

    async def _write(self, sealed: list[Sealed]) -> None:
        """Intent, inserts, published windows and alerts, then the end offsets."""
        started = time.monotonic()
        await self.consumer.commit({s.part.tp: s.intent for s in sealed})
        sends: list[Any] = []
        for s in sealed:
            p = s.part
            for table, cols in p.tables():
                await self.sink.insert(table, cols, token(p.tp.topic, p.tp.partition,
                                                          s.intent.offset, p.next, table))
            for name, msg, key in p.outgoing():
                sends.append(await self.producer.send(topic(self.settings, name), encode(msg),
                                                      key=key))
        await asyncio.gather(*sends)
        await self.consumer.commit({s.part.tp: s.done for s in sealed})
        self._account([s.part for s in sealed], time.monotonic() - started)

    def _resume_point(self, p: Part) -> tuple[int, float]:
        if p.name != "gpu.samples":
            return (p.next, 0.0)
        pw = self.core.partition(p.tp)
        point = pw.resume_point()
        return point if point is not None else (p.next, pw.watermark)

    def _account(self, parts: list[Part], seconds: float) -> None:
        m = self.metrics
        m.observe("ingest_flush_seconds", seconds, help="time to insert and commit one flush")
        now = time.time()
        for p in parts:
            m.inc("ingest_records_total", p.next - (p.start or 0), help="records consumed",
                  topic=p.name)
            m.inc("ingest_rows_total", p.rows, help="rows taken (GPU samples, events)",
                  topic=p.name)
            if p.oldest_ts is not None:
                m.observe("ingest_sample_delay_seconds", now - p.oldest_ts,
                          help="oldest sample of a batch: its timestamp to committed")
        for table, n in self.sink.rows_written.items():
            m.set("ingest_rows_written", n, help="rows written to ClickHouse", table=table)
        m.set("ingest_late_samples_dropped", self.core.late_dropped,
              help="GPU samples too late for their window (still stored raw)")
