"""Which scheduler is active: the one consumer-group member that holds partition 0 of the
one-partition ``scheduler.state`` topic. The others wait as standbys.

Kafka's group coordinator does the work: a member that stops heartbeating (killed, hung,
cut off) is dropped after ``SESSION_MS`` and the partition goes to a standby; a member that
stops cleanly leaves the group at once. Member ids start with the client id, which carries
the start time, and the round-robin assignor hands out partitions in the order of the sorted
member ids: the oldest member holds the partition, so a newly started standby does not take
over from a healthy active one.
Safety does not rest on this (two members may both believe they lead for a moment during a
rebalance): the fixed transactional id fences every older producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import KafkaError

from gpufleet.bus import make_consumer, topic
from gpufleet.retry import kafka_transient
from services.scheduler.config import SchedulerSettings, group_id

log = logging.getLogger(__name__)
LOCK_TOPIC = "scheduler.state"
SESSION_MS = 6000  # the broker's smallest allowed session by default
HEARTBEAT_MS = 1500
REBALANCE_MS = 10000  # how long a rebalance waits for the members to join again


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, election: Election) -> None:
        self.election = election

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass  # only the next assignment says who leads (every rebalance revokes everything)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.election.assigned(assigned)


class Election:
    def __init__(self, settings: SchedulerSettings) -> None:
        self.lock = TopicPartition(topic(settings, LOCK_TOPIC), 0)
        self.consumer: AIOKafkaConsumer = make_consumer(
            settings, (), f"{group_id(settings)}.active",
            client_id=f"gpufleet-scheduler-{time.time_ns():020d}",
            session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS,
            rebalance_timeout_ms=REBALANCE_MS,
            partition_assignment_strategy=(RoundRobinPartitionAssignor,))
        self.leading = False
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def assigned(self, partitions: list[TopicPartition]) -> None:
        leading = self.lock in partitions
        if partitions:
            self.consumer.pause(*partitions)  # membership only: its records are not read
        if leading != self.leading:
            log.info("this scheduler is now %s", "active" if leading else "a standby")
        self.leading = leading
        self.changed.set()

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe([self.lock.topic], listener=_Listener(self))
        self.task = asyncio.create_task(self._poll(), name="scheduler-election")

    async def _poll(self) -> None:
        """Keep polling so the group's rebalances run their callbacks (records never come:
        the partition is paused)."""
        while True:
            try:
                await self.consumer.getmany(timeout_ms=1000)
            except KafkaError as e:
                if not kafka_transient(e):
                    raise
                log.warning("election: %s: %s; polling again", type(e).__name__, e)
                await asyncio.sleep(1.0)

    def check(self) -> None:
        """Raise what stopped the polling task, if it stopped: a dead task ends the process."""
        if self.task is not None and self.task.done():
            self.task.result()
            raise RuntimeError("the scheduler election stopped polling")

    async def wait_to_lead(self, stop: asyncio.Event) -> bool:
        """Wait until this member leads; False if ``stop`` came first."""
        said = False
        while not stop.is_set():
            self.check()
            if self.leading:
                return True
            if not said and self.changed.is_set():
                log.info("standby: another scheduler is active; taking over if it goes away")
                said = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.1)
        return False

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.consumer.stop()  # leaves the group: a standby takes over at once
