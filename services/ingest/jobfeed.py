"""Every worker follows all job events and placements (not only its own partitions): a
GPU's samples and the jobs on it are keyed differently, so attribution needs the whole view.
The feed re-reads both topics from the start when a worker starts (their retention bounds it),
then ``follow`` runs in the worker's task group: a broker that is away is waited for, any
other error stops the worker."""

from __future__ import annotations

import logging
import time

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from gpufleet.bus import DeadLetters, make_consumer, partitions_of, topic
from gpufleet.config import BusSettings
from gpufleet.contracts import JobEvent, Placement
from gpufleet.retry import Outage, kafka_transient, retrying

from .core import Ingest

log = logging.getLogger(__name__)

FEED_TOPICS = ("jobs.events", "jobs.placements")


class JobFeed:
    def __init__(self, settings: BusSettings, core: Ingest, admin: AIOKafkaAdminClient) -> None:
        self._settings = settings
        self._admin = admin
        self._core = core
        self._consumer = make_consumer(settings, (), None, client_id="gpufleet-ingest-jobs")
        self._outage = Outage("broker (job feed)")
        self._letters = DeadLetters(None, settings, "ingest job feed")

    async def start(self) -> None:
        """Assign every partition and read up to the current end."""
        c = self._consumer
        await c.start()
        tps = await partitions_of(self._admin, (topic(self._settings, n) for n in FEED_TOPICS))
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        while await self._behind(tps, ends):
            await self.poll(500)

    async def _behind(self, tps: list[TopicPartition], ends: dict[TopicPartition, int]) -> bool:
        for tp in tps:
            if await self._consumer.position(tp) < ends[tp]:
                return True
        return False

    async def poll(self, timeout_ms: int) -> None:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=10_000)
        now = time.time()
        for records in batches.values():
            for rec in records:
                # what does not decode is skipped here: the grouped consumer dead-letters it
                msg, _ = self._letters.decode(rec)
                if isinstance(msg, JobEvent) and self._core.event_reason(msg, now) is None:
                    self._core.on_event(msg)
                elif isinstance(msg, Placement):
                    self._core.on_placement(msg)

    async def follow(self) -> None:
        """Apply new job events and placements until cancelled."""
        while True:
            await retrying(self._outage, kafka_transient, lambda: self.poll(200))

    async def stop(self) -> None:
        await self._consumer.stop()
