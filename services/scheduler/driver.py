"""The scheduler service: consume-transform-produce in Kafka transactions (exactly once).

Start: the ops port is bound and the topics waited for first, then the instance joins the
election (election.py) and waits as a standby until it is the active one: nothing is fenced
before then. The active one's transactional producer (one fixed transactional id) fences any
older producer and aborts its open transaction; it recovers (recovery.py) and loops. Each turn
reads a batch of inputs, runs them, the node leases and a scheduling cycle through the core,
and commits the output, the changed job records and the input offsets in one transaction; a
crash before the commit leaves none of them. Inputs are assigned by hand; the group id only
holds the committed offsets. Node heartbeats (the keys of ``gpu.samples``) are read outside
the transactions, from the end. A transient Kafka error ends the session and starts a new
one after a pause; other errors stop the process with one line and status 1. The process
itself (ops port, topics, election, lead) is ``serve`` in ``__main__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from gpufleet.bus import (
    DeadLetters,
    make_consumer,
    make_producer,
    partitions,
    stop_quietly,
    topic,
)
from gpufleet.contracts import (
    TOPIC_OF_TYPE,
    GpuDrain,
    GpuUndrain,
    JobEvent,
    JobState,
    Message,
    NodeInventory,
    SchedulerJob,
    encode,
    key_of,
)
from gpufleet.ops import Metrics
from gpufleet.retry import kafka_transient
from services.scheduler.config import SchedulerSettings, group_id, transactional_id
from services.scheduler.core import Leases, SchedulerCore
from services.scheduler.election import Election
from services.scheduler.profile import build_profile
from services.scheduler.reading import (
    make_reader,
    read_range,
)
from services.scheduler.recovery import records_of, restore
from services.scheduler.snapshot import snapshot

log = logging.getLogger(__name__)
INPUTS = ("jobs.requests", "jobs.events", "nodes", "gpu.util", "gpu.drains", "reclaims")
# What recovery reads to the end: the inventory, the job records, and the drains (the GPUs
# drained now are the ones whose last drain message is a drain; see docs/scheduler.md).
STATE = ("nodes", "scheduler.jobs", "gpu.drains")
READS = (*INPUTS, "scheduler.jobs", "scheduler.state", "gpu.samples")
RETRY_S = (1.0, 2.0, 5.0, 10.0)  # waits between tries while the broker is away


async def recover(settings: SchedulerSettings, core: SchedulerCore,
                  consumer: AIOKafkaConsumer, dead: DeadLetters) -> None:
    """Rebuild the state from the node inventory, the drains and the scheduler's own job
    records. Drains are read before any job holds GPUs again, so they only mark GPUs; the ones
    after the committed offsets are read again as inputs and stop what runs there."""
    tps = await partitions(settings, STATE)
    records = await read_range(settings, await consumer.end_offsets(tps))
    jobs: list[SchedulerJob] = []
    for record in records:
        msg, reason = dead.decode(record)
        if isinstance(msg, NodeInventory | GpuDrain | GpuUndrain):
            core.handle(msg)
        elif isinstance(msg, SchedulerJob):
            jobs.append(msg)
        elif reason is not None:
            log.warning("recovery skips %s[%d]@%d: %s", record.topic, record.partition,
                        record.offset, reason)
    restore(core, jobs)
    log.info("recovered: %d nodes, %d queued, %d running, %d jobs known, %d GPUs drained",
             core.cluster.n_nodes, len(core.pending), len(core.running), len(core.records),
             len(core.loop.drains.gpus))


def leases(settings: SchedulerSettings) -> Leases:
    return Leases(node_lease_s=settings.scheduler_node_lease_s,
                  start_timeout_s=settings.scheduler_start_timeout_s,
                  max_attempts=settings.scheduler_max_attempts)


@dataclass
class Loop:
    settings: SchedulerSettings
    core: SchedulerCore
    consumer: AIOKafkaConsumer
    producer: AIOKafkaProducer
    metrics: Metrics
    dead: DeadLetters
    beats: AIOKafkaConsumer | None = None
    last_state: float = 0.0
    rate: list[tuple[float, int]] = field(default_factory=list)

    async def heartbeats(self) -> None:
        """Every node that sent samples since the last turn is alive (the key is enough)."""
        if self.beats is None:
            return
        for records in (await self.beats.getmany(timeout_ms=0, max_records=10_000)).values():
            for record in records:
                if record.key:
                    self.core.heartbeat(record.key.decode(errors="replace"))

    async def turn(self) -> None:
        """One batch: inputs, leases and a cycle through the core; output, job records and
        input offsets in one transaction."""
        s = self.settings
        batch = await self.consumer.getmany(timeout_ms=100, max_records=s.scheduler_batch_max)
        await self.heartbeats()
        now = time.monotonic()
        state_due = now - self.last_state >= s.scheduler_state_interval_s
        if not batch and not self.core.dirty and not state_due and not self.core.lease_due():
            return
        async with self.producer.transaction():
            out: list[Message] = []
            for records in batch.values():
                for record in records:
                    out += await self.dead.handle(record, self.core.handle) or []
            lost = self.core.expire()
            self.metrics.inc("scheduler_lost_total", sum(
                1 for m in lost if isinstance(m, JobEvent) and m.state == JobState.LOST),
                help="job attempts given up with their node or for not starting")
            out += lost
            if self.core.dirty:
                out += self._cycle()
            out += records_of(self.core)
            if state_due:
                self.last_state = now
                out.append(snapshot(self.core, s.cluster, self._per_second(now)))
            sent = [await self.producer.send(topic(s, TOPIC_OF_TYPE[type(msg)].name),
                                             encode(msg), key=key_of(msg)) for msg in out]
            # A batch that fails (no leader until it expired) must abort the transaction:
            # the commit alone would go through without it.
            await asyncio.gather(*sent)
            if batch:
                offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
                await self.producer.send_offsets_to_transaction(offsets, group_id(s))
        self.metrics.inc("scheduler_messages_out_total", len(out), help="messages published")
        self.metrics.set("scheduler_nodes_offline", len(self.core.expired),
                         help="nodes whose lease ran out")
    def _cycle(self) -> list[Message]:
        started = time.perf_counter()
        out = self.core.cycle()
        stats = self.core.last
        m = self.metrics
        m.observe("scheduler_cycle_seconds", time.perf_counter() - started, help="cycle time")
        for latency in stats.latencies:
            m.observe("scheduler_decision_seconds", latency, help="one job's placement attempt")
        m.inc("scheduler_decisions_total", stats.decisions, help="jobs decided (placed or not)")
        m.inc("scheduler_placements_total", stats.placed, help="jobs placed")
        m.set("scheduler_queue_depth", len(self.core.pending), help="jobs waiting")
        m.set("scheduler_running_jobs", len(self.core.running), help="jobs holding GPUs")
        self.rate.append((time.monotonic(), stats.decisions))
        return out

    def _per_second(self, now: float) -> float:
        self.rate = [(t, n) for t, n in self.rate if now - t <= 60]
        if not self.rate:
            return 0.0
        rate = sum(n for _, n in self.rate) / max(now - self.rate[0][0], 1.0)
        self.metrics.set("scheduler_decisions_per_second", rate, help="over the last minute")
        return rate


async def session(settings: SchedulerSettings, stop: asyncio.Event, election: Election,
                  metrics: Metrics, ready: dict[str, bool]) -> None:
    """Be the active scheduler until ``stop``, or until another member leads: fence, recover,
    loop. Every session starts from the committed state with fresh clients."""
    core = SchedulerCore(build_profile(settings), clock=time.time, timer=time.perf_counter,
                         leases=leases(settings))
    producer = make_producer(settings, transactional_id=transactional_id(settings),
                             client_id="gpufleet-scheduler")
    consumer = make_reader(settings, group_id(settings))
    beats = None
    if settings.scheduler_node_lease_s > 0:
        beats = make_consumer(settings, (), None, client_id="gpufleet-scheduler-leases",
                              isolation_level="read_uncommitted")
    try:
        await producer.start()  # fences any older instance, aborts its open transaction
        await consumer.start()
        dead = DeadLetters(producer, settings, "scheduler")
        await recover(settings, core, consumer, dead)
        consumer.assign(await partitions(settings, INPUTS))
        if beats is not None:
            await beats.start()
            samples = await partitions(settings, ["gpu.samples"])
            beats.assign(samples)
            await beats.seek_to_end(*samples)  # only what nodes say from now on
        ready["recovered"] = True
        loop = Loop(settings, core, consumer, producer, metrics, dead, beats)
        while not stop.is_set() and election.leading:
            election.check()
            await loop.turn()
    finally:
        ready["recovered"] = False
        for client in (beats, consumer, producer):
            if client is not None:
                await stop_quietly(client)


async def lead(settings: SchedulerSettings, stop: asyncio.Event, election: Election,
               metrics: Metrics, ready: dict[str, bool]) -> None:
    """Wait to lead, lead, and wait again when the lead is lost; a transient Kafka error ends
    a session and, after a pause, the next one starts from the committed state."""
    tries = 0
    while await election.wait_to_lead(stop):
        ready["active"] = True
        try:
            await session(settings, stop, election, metrics, ready)
            tries = 0
        except (KafkaError, asyncio.CancelledError) as e:
            if isinstance(e, asyncio.CancelledError):
                # Ours (a second signal): go. Else a future of the Kafka client, cancelled
                # when its sender task failed (the broker went away mid-commit): retry.
                task = asyncio.current_task()
                if stop.is_set() or (task is not None and task.cancelling()):
                    raise
            elif not kafka_transient(e):
                raise
            wait = RETRY_S[min(tries, len(RETRY_S) - 1)]
            tries += 1
            metrics.inc("scheduler_sessions_restarted_total", help="after a transient error")
            log.warning("Kafka error (%s: %s); starting again from the committed state in "
                        "%g s", type(e).__name__, e, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
        finally:
            ready["active"] = False
