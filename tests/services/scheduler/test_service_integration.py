"""The scheduler service on the real broker: exactly once through two SIGKILLs."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections import Counter, defaultdict

import pytest
from sched_builders import make_node
from sched_service import (
    reader,
    readyz,
    scheduler,
    scheduler_env,
    start,
)

from gpufleet.bus import make_producer, publish
from gpufleet.config import BusSettings
from gpufleet.contracts import (
    CancelJob,
    JobEvent,
    JobSpec,
    JobState,
    Placement,
    SchedulerState,
    SubmitJob,
    decoder_for,
)
from gpufleet.topics import create_topics

pytestmark = pytest.mark.integration
JOBS = 1000
NODES = 16


def spec(i: int) -> JobSpec:
    kind = i % 4
    if kind == 0:
        return JobSpec(job_id=f"job-{i:04d}", gpus=1, gpu_milli=250 + 50 * (i % 10))
    return JobSpec(job_id=f"job-{i:04d}", gpus=(1, 2, 4)[kind - 1], tenant=f"t{i % 3}")


class Executor:
    """Plays the executors: runs each placement briefly, then reports it succeeded; checks
    that no GPU is ever given more than it has."""

    def __init__(self) -> None:
        self.used: dict[tuple[str, int], int] = defaultdict(int)
        self.placed: Counter[tuple[str, int]] = Counter()  # no preemption here: one attempt
        self.overcommits: list[str] = []

    def take(self, p: Placement) -> None:
        self.placed[(p.job.job_id, p.member)] += 1
        for g in p.gpus:
            self.used[(p.node, g)] += p.gpu_milli
            if self.used[(p.node, g)] > 1000:
                self.overcommits.append(f"{p.node}/{g} by {p.job.job_id}")

    def finish(self, p: Placement) -> JobEvent:
        for g in p.gpus:
            self.used[(p.node, g)] -= p.gpu_milli
        return JobEvent(job_id=p.job.job_id, state=JobState.SUCCEEDED, node=p.node,
                        attempt=p.attempt, source="executor")


async def run_executor(bus: BusSettings, ex: Executor, done: asyncio.Event) -> None:
    producer = make_producer(bus)
    consumer = reader(bus, "jobs.placements")
    await producer.start()
    await consumer.start()
    dec = decoder_for("jobs.placements")
    running: list[tuple[float, Placement]] = []
    loop = asyncio.get_running_loop()
    try:
        while not done.is_set():
            batch = await consumer.getmany(timeout_ms=50)
            for records in batch.values():
                for r in records:
                    msg = dec.decode(r.value)
                    if isinstance(msg, Placement):
                        ex.take(msg)
                        running.append((loop.time() + 0.05 + (hash(msg.job.job_id) % 5) / 20,
                                        msg))
            now = loop.time()
            for _, p in [x for x in running if x[0] <= now]:
                await publish(producer, bus, "jobs.events", ex.finish(p))
            running = [x for x in running if x[0] > now]
    finally:
        await consumer.stop()
        await producer.stop()


async def test_a_thousand_jobs_through_two_sigkills(bus: BusSettings) -> None:
    producer = make_producer(bus)
    await producer.start()
    for n in range(NODES):
        await publish(producer, bus, "nodes", make_node(f"node-{n:02d}").inventory())
    env = scheduler_env(bus, f"sched-{uuid.uuid4().hex[:8]}")
    ex = Executor()
    done = asyncio.Event()
    executor = asyncio.create_task(run_executor(bus, ex, done))
    try:
        with scheduler(env) as first:
            kills = []
            for i in range(JOBS):
                await publish(producer, bus, "jobs.requests", SubmitJob(job=spec(i)))
                if i % 10 == 0:
                    await asyncio.sleep(0.1)  # a steady stream, about ten seconds long
                if i in (300, 650):  # kill it mid-stream and start it again
                    async with asyncio.timeout(60):  # once the restarted one is placing
                        while kills and len(ex.placed) <= kills[-1]:
                            await asyncio.sleep(0.1)
                    kills.append(len(ex.placed))
                    first.send_signal(signal.SIGKILL)
                    first.wait()
                    first = start(env, subprocess.DEVNULL)
            async with asyncio.timeout(60):
                while len({k[0] for k in ex.placed}) < JOBS:
                    await asyncio.sleep(0.2)
            first.terminate()
            assert first.wait(timeout=20) == 0
    finally:
        done.set()
        await executor
        await producer.stop()
    assert kills[0] > 0 and kills[1] > kills[0]  # it was placing when it was killed
    assert not ex.overcommits
    assert [k for k, n in ex.placed.items() if n > 1] == []
    assert {k[0] for k in ex.placed} == {spec(i).job_id for i in range(JOBS)}


async def test_bad_requests_are_rejected_with_a_reason(bus: BusSettings) -> None:
    producer = make_producer(bus)
    await producer.start()
    await publish(producer, bus, "nodes", make_node("node-00").inventory())
    bad = {"zero": JobSpec(job_id="zero", gpus=0),
           "huge": JobSpec(job_id="huge", gpu_milli=1500),
           "model": JobSpec(job_id="model", gpu_models=["TPU"]),
           "gang": JobSpec(job_id="gang", gpus=8, gang=3)}
    for s in [*bad.values(), JobSpec(job_id="ok"), JobSpec(job_id="ok")]:
        await publish(producer, bus, "jobs.requests", SubmitJob(job=s))
    await publish(producer, bus, "jobs.requests", CancelJob(job_id="nobody"))
    events = reader(bus, "jobs.events")
    states = reader(bus, "scheduler.state")
    await events.start()
    await states.start()
    rejected: dict[str, list[str]] = defaultdict(list)
    snapshot: SchedulerState | None = None
    with scheduler(scheduler_env(bus, f"sched-{uuid.uuid4().hex[:8]}")) as proc:
        async with asyncio.timeout(30):
            while sum(len(v) for v in rejected.values()) < 5 or snapshot is None:
                for records in (await events.getmany(timeout_ms=200)).values():
                    for r in records:
                        ev = decoder_for("jobs.events").decode(r.value)
                        if ev.state == JobState.REJECTED:
                            rejected[ev.job_id].append(ev.reason or "")
                for records in (await states.getmany(timeout_ms=50)).values():
                    snapshot = decoder_for("scheduler.state").decode(records[-1].value)
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    await events.stop()
    await states.stop()
    await producer.stop()
    assert set(rejected) == {*bad, "ok"}
    assert all(all(reasons) for reasons in rejected.values())
    assert "duplicate" in rejected["ok"][0]
    assert snapshot is not None and [n.node for n in snapshot.nodes] == ["node-00"]


async def test_topics_created_after_the_start_are_waited_for(kafka_bootstrap: str) -> None:
    bus = BusSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}",
                      cluster="test")  # no topic of this prefix exists yet
    env = scheduler_env(bus, f"sched-{uuid.uuid4().hex[:8]}")
    port = int(env["GPUFLEET_SCHEDULER_OPS_PORT"])
    with scheduler(env) as proc:
        async with asyncio.timeout(30):
            while await readyz(port) is None:
                await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # time enough to start wrongly with no partitions
        assert await readyz(port) == 503
        await create_topics(bus, replication_factor=1, partitions=1)
        producer = make_producer(bus)
        await producer.start()
        await publish(producer, bus, "nodes", make_node("node-00").inventory())
        await publish(producer, bus, "jobs.requests", SubmitJob(job=JobSpec(job_id="late")))
        await producer.stop()
        placements = reader(bus, "jobs.placements")
        await placements.start()
        placed: list[str] = []
        try:
            async with asyncio.timeout(30):
                while not placed:
                    for records in (await placements.getmany(timeout_ms=200)).values():
                        placed += [decoder_for("jobs.placements").decode(r.value).job.job_id
                                   for r in records]
        finally:
            await placements.stop()
        assert placed == ["late"]
        assert await readyz(port) == 200
        proc.terminate()
        assert proc.wait(timeout=20) == 0


async def test_a_stop_while_waiting_for_topics_exits_cleanly(kafka_bootstrap: str) -> None:
    bus = BusSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}",
                      cluster="test")
    env = scheduler_env(bus, f"sched-{uuid.uuid4().hex[:8]}")
    with scheduler(env) as proc:
        async with asyncio.timeout(30):
            while await readyz(int(env["GPUFLEET_SCHEDULER_OPS_PORT"])) != 503:
                await asyncio.sleep(0.2)
        proc.terminate()
        assert await asyncio.to_thread(proc.wait, 20) == 0
