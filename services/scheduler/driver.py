"""The scheduler service: consume-transform-produce in Kafka transactions (exactly once).

One fixed transactional id: starting the producer fences any older instance (which then gets
``ProducerFenced`` and exits) and aborts its open transaction. Each loop turn reads a batch of
inputs, runs them and a scheduling cycle through the core, and commits the output together
with the input offsets in one transaction; a crash before the commit leaves neither. Inputs
are assigned by hand (no group rebalance to wait for after a restart); the group id only holds
the committed offsets. See recovery.py for how a restart rebuilds the state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import ProducerFenced

from gpufleet.bus import DeadLetters, make_producer, short_name, topic
from gpufleet.contracts import (
    TOPIC_OF_TYPE,
    JobEvent,
    Message,
    NodeInventory,
    Placement,
    StopJob,
    SubmitJob,
    encode,
    key_of,
)
from gpufleet.ops import Metrics, serve_ops
from services.scheduler.config import SchedulerSettings, group_id, transactional_id
from services.scheduler.core import SchedulerCore
from services.scheduler.profile import build_profile
from services.scheduler.reading import (
    RecoveryIncomplete,
    make_reader,
    partitions,
    read_range,
    wait_for_topics,
)
from services.scheduler.recovery import restore
from services.scheduler.snapshot import snapshot

log = logging.getLogger(__name__)
INPUTS = ("jobs.requests", "jobs.events", "nodes", "gpu.util")
READS = (*INPUTS, "jobs.placements")  # inputs, and its own output read back by recovery


async def recover(settings: SchedulerSettings, core: SchedulerCore,
                  consumer: AIOKafkaConsumer, dead: DeadLetters) -> None:
    """Rebuild the state from the inventory, the accepted requests and the committed output."""
    req = await partitions(consumer, settings, ["jobs.requests"])
    out_tps = await partitions(consumer, settings, ["nodes", "jobs.placements", "jobs.events"])
    ends = await consumer.end_offsets(out_tps)
    for tp in req:
        ends[tp] = await consumer.committed(tp) or 0
    records = await read_range(settings, ends)
    decoded = [(short_name(settings, r.topic), dead.decode(r)[0]) for r in records]
    for name, msg in decoded:
        if name == "nodes" and isinstance(msg, NodeInventory):
            core.handle(msg)
    specs = [m.job for n, m in decoded if isinstance(m, SubmitJob)]
    commands: dict[str, list[Message]] = {}
    events: dict[str, list[JobEvent]] = {}
    for _, msg in decoded:
        if isinstance(msg, Placement | StopJob):
            job_id = msg.job.job_id if isinstance(msg, Placement) else msg.job_id
            commands.setdefault(job_id, []).append(msg)
        elif isinstance(msg, JobEvent):
            events.setdefault(msg.job_id, []).append(msg)
    restore(core, specs, commands, events)
    log.info("recovered: %d nodes, %d queued, %d running, %d jobs known",
             core.cluster.n_nodes, len(core.pending), len(core.running), len(core.records))


@dataclass
class Loop:
    settings: SchedulerSettings
    core: SchedulerCore
    consumer: AIOKafkaConsumer
    producer: AIOKafkaProducer
    metrics: Metrics
    dead: DeadLetters
    last_state: float = 0.0
    rate: list[tuple[float, int]] = field(default_factory=list)

    async def turn(self) -> None:
        """One batch: inputs and a cycle through the core, output and offsets in one txn."""
        s = self.settings
        batch = await self.consumer.getmany(timeout_ms=100, max_records=s.scheduler_batch_max)
        now = time.monotonic()
        state_due = now - self.last_state >= s.scheduler_state_interval_s
        if not batch and not self.core.dirty and not state_due:
            return
        async with self.producer.transaction():
            out: list[Message] = []
            for records in batch.values():
                for record in records:
                    out += await self.dead.handle(record, self.core.handle) or []
            if self.core.dirty:
                out += self._cycle()
            if state_due:
                self.last_state = now
                out.append(snapshot(self.core, s.cluster, self._per_second(now)))
            for msg in out:
                name = TOPIC_OF_TYPE[type(msg)].name
                await self.producer.send(topic(s, name), encode(msg), key=key_of(msg))
            if batch:
                offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
                await self.producer.send_offsets_to_transaction(offsets, group_id(s))
        self.metrics.inc("scheduler_messages_out_total", len(out), help="messages published")

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


async def run(settings: SchedulerSettings, stop: asyncio.Event) -> int:
    """Run until ``stop`` is set (0), another instance fences this one (1) or recovery cannot
    read its topics to the end (1). Waits first for every topic it reads to exist."""
    metrics = Metrics()
    core = SchedulerCore(build_profile(settings), clock=time.time, timer=time.perf_counter)
    producer = make_producer(settings, transactional_id=transactional_id(settings),
                             client_id="gpufleet-scheduler")
    consumer = make_reader(settings, group_id(settings))
    await producer.start()  # fences any older instance, aborts its open transaction
    await consumer.start()
    ready = {"recovered": False}

    async def readiness() -> dict[str, bool]:
        return dict(ready)

    ops = await serve_ops(
        metrics, settings.scheduler_ops_host, settings.scheduler_ops_port, readiness
    )
    try:
        if not await wait_for_topics(consumer, settings, READS, stop):
            return 0
        dead = DeadLetters(producer, settings, "scheduler")
        await recover(settings, core, consumer, dead)
        consumer.assign(await partitions(consumer, settings, INPUTS))
        ready["recovered"] = True
        loop = Loop(settings, core, consumer, producer, metrics, dead)
        while not stop.is_set():
            await loop.turn()
        return 0
    except ProducerFenced:
        log.error("another scheduler instance took over (fenced); exiting")
        return 1
    except RecoveryIncomplete as e:
        log.error("%s; exiting", e)
        return 1
    finally:
        await ops.cleanup()
        await consumer.stop()
        await producer.stop()
