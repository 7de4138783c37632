"""One ingest worker: Kafka in, ClickHouse and Kafka out. The batching and the offsets are
``batcher.Batcher``'s (a pure state machine); this carries out its actions.

1. Consume every source topic (``sources.SOURCES``) in batches: one consumer per worker, a
   consumer group across workers (scale-out is more partitions and more workers).
2. Hand each partition's records to the batcher; send the dead letters it names.
3. Write what it seals: commit the intent, insert each partition's tables with its
   de-duplication token, publish closed windows and alerts, then commit the done offset.
   Offsets move only after ClickHouse and Kafka have acknowledged: at-least-once in,
   exactly-once rows.
4. While the warehouse is away a write waits for it (``gpufleet.retry``); the next batch fills,
   then the batcher pauses the partitions and the consumer keeps polling (so it stays in its
   group) until the write is through. Readiness is red meanwhile, and ``/metrics`` shows the lag.

The consuming loop, the job feed and the monitor run in one task group: if one dies, the
worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from gpufleet.bus import DeadLetters, make_consumer, make_producer, short_name, topic
from gpufleet.contracts import Message, encode
from gpufleet.ops import Metrics
from gpufleet.retry import Outage, kafka_transient, retrying

from .batcher import Action, Batcher, DeadLetter, Pause, Resume, Seek, Write
from .config import IngestSettings
from .core import Ingest, Params
from .jobfeed import JobFeed
from .progress import Mark, token
from .sink import ClickHouseSink
from .sources import SOURCES, TABLES

log = logging.getLogger(__name__)

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


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
        self.batcher: Batcher[TopicPartition] = Batcher(
            self.core, self.dead.decode, lambda tp: short_name(settings, tp.topic),
            settings.batch_max_rows, settings.batch_within_s)
        self.lock = asyncio.Lock()
        self.ready = False
        self._writing: asyncio.Task[None] | None = None
        self._poll_max = max(1, settings.batch_max_rows // 8)  # node messages hold ~8 GPUs

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.sink.start(TABLES)
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
            await self._last_write()
        finally:
            self.ready = False
            await self._close()

    async def _consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self._writing is not None and self._writing.done():
                # A background write that failed stops the worker now, not at the next
                # write (which an idle topic may never bring).
                writing, self._writing = self._writing, None
                await writing
            batches = await self.consumer.getmany(timeout_ms=100, max_records=self._poll_max)
            async with self.lock:
                now = time.time()
                for tp, records in batches.items():
                    await self._perform(self.batcher.take(tp, records, now))
                await self._perform(self.batcher.polled(time.monotonic()))

    async def _last_write(self) -> None:
        """Store what is held, waiting for the warehouse at most ``ingest_stop_flush_s``;
        what is left is read again at the next start (its offsets were not committed)."""
        try:
            async with asyncio.timeout(self.settings.ingest_stop_flush_s):
                async with self.lock:
                    await self._perform([self.batcher.stopping()])
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
        stored = self.batcher.stored
        while True:
            m.set("ingest_warehouse_unavailable_seconds", self.sink.outage.seconds(),
                  help="how long the warehouse has been away (0: it is not)")
            tps = list(stored)
            if tps:
                try:
                    ends = await asyncio.wait_for(self.consumer.end_offsets(tps), 5)
                except (KafkaError, TimeoutError):
                    ends = {}  # the broker is away too: the gauges keep their last values
                for tp, end in ends.items():
                    if tp in stored:
                        m.set("ingest_consumer_lag", max(0, end - stored[tp]),
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
            with contextlib.suppress(Exception):
                await self._perform(self.batcher.revoked(revoked))

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
                await self._perform(self.batcher.assigned(tp, committed, mark))
                log.info("resume %s[%d] at %s (intent end %s)", tp.topic, tp.partition,
                         committed, mark.end)

    # -- actions ------------------------------------------------------------------------

    async def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case DeadLetter():
                    await self._dead_letter(action)
                case Write():
                    await self._start_write(action)
                case Seek():
                    self.consumer.seek(action.tp, action.offset)
                case Pause():
                    self.consumer.pause(*self.consumer.assignment())
                case Resume():
                    self.consumer.resume(*self.consumer.paused())

    async def _dead_letter(self, letter: DeadLetter[Record]) -> None:
        if letter.error is not None:
            await self.dead.failed(letter.record, letter.error)
            return
        self.metrics.inc("ingest_dead_letters_total", help="records sent to the dlq",
                         topic=letter.topic)
        await retrying(self.bus_outage, kafka_transient,
                       functools.partial(self.dead.send, letter.record, letter.reason))

    async def _start_write(self, write: Write[TopicPartition]) -> None:
        """Writes go one after the other, so commits stay in order: the previous one is
        awaited first. A write that does not ``wait`` lets the worker take the next records
        while ClickHouse stores this batch."""
        if self._writing is not None:
            writing, self._writing = self._writing, None
            try:
                await writing
            except BaseException:
                self.batcher.written(write, False)  # never started: not in flight either
                raise
        self._writing = asyncio.create_task(self._write(write))
        if write.wait:
            writing, self._writing = self._writing, None
            await writing

    async def _write(self, write: Write[TopicPartition]) -> None:
        """Intent, inserts, published windows and alerts, then the done offsets. Each step
        waits out a broker or a warehouse that is away; a repeated step is harmless (the
        inserts carry their tokens, windows and alerts their event ids)."""
        committed = False
        try:
            if write.sealed:
                committed = await self._store(write)
        finally:
            self.batcher.written(write, committed)

    async def _store(self, write: Write[TopicPartition]) -> bool:
        started = time.monotonic()
        sealed = write.sealed
        try:
            await self._commit({s.tp: OffsetAndMetadata(s.start, s.intent.encode())
                                for s in sealed})
        except CommitFailedError as e:
            return self._moved(e)
        for s in sealed:
            for table, cols in s.batch.tables:
                await self.sink.insert(table, cols, token(s.tp.topic, s.tp.partition,
                                                          s.start, s.end, table))
        outgoing = [o for s in sealed for o in s.batch.outgoing]
        if outgoing:
            await retrying(self.bus_outage, kafka_transient, lambda: self._send(outgoing))
        try:
            await self._commit({s.tp: OffsetAndMetadata(s.end, s.done.encode())
                                for s in sealed})
        except CommitFailedError as e:
            return self._moved(e)
        self._account(write, time.monotonic() - started)
        return True

    @staticmethod
    def _moved(e: CommitFailedError) -> bool:
        """The partitions went to another worker mid-write: it re-reads from the last commit
        and stores the same rows again under the same tokens."""
        log.warning("offsets not committed, the partitions moved (%s)", e)
        return False

    async def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        await retrying(self.bus_outage, kafka_transient, lambda: self.consumer.commit(offsets))

    async def _send(self, outgoing: list[tuple[str, Message, bytes | None]]) -> None:
        sends = [await self.producer.send(topic(self.settings, name), encode(msg), key=key)
                 for name, msg, key in outgoing]
        await asyncio.gather(*sends)

    def _account(self, write: Write[Any], seconds: float) -> None:
        m = self.metrics
        m.observe("ingest_flush_seconds", seconds, help="time to insert and commit one flush")
        now = time.time()
        for s in write.sealed:
            m.inc("ingest_records_total", s.end - s.start, help="records consumed",
                  topic=s.topic)
            m.inc("ingest_rows_total", s.batch.rows, help="rows taken (GPU samples, events)",
                  topic=s.topic)
            if s.batch.oldest_ts is not None:
                m.observe("ingest_sample_delay_seconds", now - s.batch.oldest_ts,
                          help="oldest sample of a batch: its timestamp to committed")
        for table, n in self.sink.rows_written.items():
            m.set("ingest_rows_written", n, help="rows written to ClickHouse", table=table)
        m.set("ingest_late_samples_dropped", self.core.late_dropped,
              help="GPU samples too late for their window (still stored raw)")
