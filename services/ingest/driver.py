"""One ingest worker: Kafka in, ClickHouse and Kafka out. Thin wiring around ``core``.

1. Consume samples, job events, placements and inventory in batches (one consumer per worker,
   a consumer group across workers; scale-out is more partitions and more workers).
2. Per partition: decode, check, dead-letter what is unusable, fold the rest into rows and
   windows. A partition's batch is cut by rows or time.
3. Flush: commit an intent (``progress.Mark``), insert each partition's rows with its
   de-duplication token, publish closed windows and alerts, then commit the end offset. Offsets
   move only after ClickHouse and Kafka have acknowledged: at-least-once in, exactly-once rows.
4. While the warehouse is away a write waits for it (``gpufleet.retry``); the next batch fills,
   then the partitions are paused and the consumer keeps polling (so it stays in its group)
   until the write is through. Readiness is red meanwhile, and ``/metrics`` shows the lag.

The consuming loop, the job feed and the monitor run in one task group: if one dies, the
worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from gpufleet.bus import DeadLetters, make_consumer, make_producer, short_name, topic
from gpufleet.contracts import Message, encode
from gpufleet.ops import Metrics
from gpufleet.retry import Outage, kafka_transient, retrying

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
                  job_retention_s=s.job_retention_s, energy_gap_s=s.energy_gap_s,
                  job_lease_s=s.job_lease_s)


class Worker(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, settings: IngestSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.core = Ingest(params_of(settings), cluster=settings.cluster)
        self.sink = ClickHouseSink(settings.clickhouse_url, Outage("warehouse", metrics))
        self.bus_outage = Outage("broker", metrics)
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
        self.stored: dict[TopicPartition, int] = {}  # offsets committed as stored
        self._paused = False
        self._writing: asyncio.Task[None] | None = None
        self._poll_max = max(1, settings.batch_max_rows // 8)  # node messages hold ~8 GPUs

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.sink.start()
            await self.producer.start()
            await self.admin.start()
            await self.feed.start()
            self.consumer.subscribe([topic(self.settings, n) for n in SOURCES], listener=self)
            await self.consumer.start()
            self.ready = True
            async with asyncio.TaskGroup() as tg:
                helpers = [tg.create_task(self.feed.follow(), name="ingest-job-feed"),
                           tg.create_task(self._monitor(), name="ingest-monitor")]
                try:
                    await self._consume(stop)
                finally:
                    for h in helpers:
                        h.cancel()
            await self._last_flush()
        finally:
            self.ready = False
            await self._close()

    async def _consume(self, stop: asyncio.Event) -> None:
        last_flush = time.monotonic()
        while not stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=100, max_records=self._poll_max)
            async with self.lock:
                for tp, records in batches.items():
                    part = self.parts.get(tp)
                    if part is not None:
                        await self._take(part, records)
                rows = sum(p.rows for p in self.parts.values())
                due = time.monotonic() - last_flush >= self.settings.batch_within_s
                if not (rows >= self.settings.batch_max_rows or due):
                    continue
                if self._writing is not None and not self._writing.done():
                    self._pause()  # the previous write waits on the warehouse: hold here
                    continue
                self._unpause()
                await self._flush([p for p in self.parts.values() if p.end is None],
                                  wait=False)
                last_flush = time.monotonic()

    def _pause(self) -> None:
        if not self._paused:
            self.consumer.pause(*self.consumer.assignment())
            self._paused = True

    def _unpause(self) -> None:
        if self._paused:
            self.consumer.resume(*self.consumer.paused())
            self._paused = False

    async def _last_flush(self) -> None:
        """Store what is held, waiting for the warehouse at most ``ingest_stop_flush_s``;
        what is left is read again at the next start (its offsets were not committed)."""
        try:
            async with asyncio.timeout(self.settings.ingest_stop_flush_s):
                async with self.lock:
                    await self._flush([p for p in self.parts.values() if p.end is None])
        except TimeoutError:
            log.warning("stopping with the warehouse away (%s): the records not stored are "
                        "read again at the next start", self.sink.outage.last_error)

    async def _close(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:  # only when stopping on an error: redone at the next start
            writing.cancel()
            await asyncio.wait([writing])
            if not writing.cancelled() and writing.exception() is not None:
                log.warning("a write in flight failed: %s", writing.exception())
        for closer in (self.consumer.stop, self.feed.stop, self.admin.close, self.producer.stop,
                       self.sink.close):
            with contextlib.suppress(Exception):
                await closer()

    async def _monitor(self, every_s: float = 2.0) -> None:
        """Keep the lag and the outage gauges of ``/metrics`` current, whatever the loop does."""
        m = self.metrics
        while True:
            m.set("ingest_warehouse_unavailable_seconds", self.sink.outage.seconds(),
                  help="how long the warehouse has been away (0: it is not)")
            tps = list(self.stored)
            if tps:
                try:
                    ends = await asyncio.wait_for(self.consumer.end_offsets(tps), 5)
                except (KafkaError, TimeoutError):
                    ends = {}  # the broker is away too: the gauges keep their last values
                for tp, end in ends.items():
                    if tp in self.stored:
                        m.set("ingest_consumer_lag", max(0, end - self.stored[tp]),
                              help="records not yet stored (log end - committed offset)",
                              topic=short_name(self.settings, tp.topic),
                              partition=str(tp.partition))
            await asyncio.sleep(every_s)

    async def readiness(self) -> dict[str, bool]:
        return {"consuming": self.ready, "warehouse": not self.sink.outage.down,
                "broker": not self.bus_outage.down}

    # -- rebalancing --------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.lock:
            gone = [self.parts[tp] for tp in revoked if tp in self.parts]
            with contextlib.suppress(Exception):
                await self._flush([p for p in gone if p.end is None])
            for p in gone:
                del self.parts[p.tp]
                self.stored.pop(p.tp, None)
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
        self.stored[tp] = committed or 0
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
            await retrying(self.bus_outage, kafka_transient,
                           functools.partial(self.dead.send, rec, reason))
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
        """Intent, inserts, published windows and alerts, then the end offsets. Each step
        waits out a broker or a warehouse that is away; a repeated step is harmless (the
        inserts carry their tokens, windows and alerts their event ids)."""
        started = time.monotonic()
        try:
            await self._commit({s.part.tp: s.intent for s in sealed})
        except CommitFailedError as e:
            self._moved(e)
            return
        for s in sealed:
            p = s.part
            for table, cols in p.tables():
                await self.sink.insert(table, cols, token(p.tp.topic, p.tp.partition,
                                                          s.intent.offset, p.next, table))
        outgoing = [(name, msg, key) for s in sealed for name, msg, key in s.part.outgoing()]
        if outgoing:
            await retrying(self.bus_outage, kafka_transient, lambda: self._send(outgoing))
        try:
            await self._commit({s.part.tp: s.done for s in sealed})
        except CommitFailedError as e:
            self._moved(e)
            return
        for s in sealed:
            if s.part.tp in self.stored:
                self.stored[s.part.tp] = s.done.offset
        self._account([s.part for s in sealed], time.monotonic() - started)

    @staticmethod
    def _moved(e: CommitFailedError) -> None:
        """The partitions went to another worker mid-write: it re-reads from the last commit
        and stores the same rows again under the same tokens."""
        log.warning("offsets not committed, the partitions moved (%s)", e)

    async def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        await retrying(self.bus_outage, kafka_transient, lambda: self.consumer.commit(offsets))

    async def _send(self, outgoing: list[tuple[str, Message, bytes]]) -> None:
        sends = [await self.producer.send(topic(self.settings, name), encode(msg), key=key)
                 for name, msg, key in outgoing]
        await asyncio.gather(*sends)

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
