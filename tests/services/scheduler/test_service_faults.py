"""The scheduler service under faults, on a real broker: a second instance, a silent node, a job
older than the retention of its topics, a broker restart."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from sched_builders import make_node
from sched_service import drain, reader, readyz, scheduler, scheduler_env, wait_ready

from gpufleet.bus import make_producer, publish, topic
from gpufleet.config import BusSettings
from gpufleet.contracts import (
    JobEvent,
    JobSpec,
    JobState,
    NodeSample,
    Placement,
    SchedulerState,
    StopJob,
    SubmitJob,
)
from gpufleet.localkafka import LocalKafka, free_port

pytestmark = pytest.mark.integration


def port_of(env: dict[str, str]) -> int:
    return int(env["GPUFLEET_SCHEDULER_OPS_PORT"])


async def submit(bus: BusSettings, *specs: JobSpec, nodes: tuple[str, ...] = ()) -> None:
    producer = make_producer(bus)
    await producer.start()
    try:
        for name in nodes:
            await publish(producer, bus, "nodes", make_node(name).inventory())
        for s in specs:
            await publish(producer, bus, "jobs.requests", SubmitJob(job=s))
    finally:
        await producer.stop()


async def finish(bus: BusSettings, job_id: str, attempt: int = 0) -> None:
    producer = make_producer(bus)
    await producer.start()
    await publish(producer, bus, "jobs.events", JobEvent(
        job_id=job_id, state=JobState.SUCCEEDED, attempt=attempt, source="executor"))
    await producer.stop()


class Watch:
    """Everything the scheduler committed on its output topics, read as it comes."""

    def __init__(self, bus: BusSettings) -> None:
        self.names = ("jobs.placements", "jobs.events", "scheduler.state")
        self.readers = {n: reader(bus, n) for n in self.names}
        self.seen: dict[str, list[object]] = {n: [] for n in self.names}

    async def __aenter__(self) -> Watch:
        for r in self.readers.values():
            await r.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        for r in self.readers.values():
            await r.stop()

    async def poll(self) -> None:
        for name, r in self.readers.items():
            self.seen[name] += await drain(r, name, timeout_ms=50)

    async def until(self, what: str, check: object, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout):
            while not check():  # type: ignore[operator]
                await self.poll()
        assert check(), what  # type: ignore[operator]

    def placed(self) -> Counter[tuple[str, int]]:
        return Counter((m.job.job_id, m.attempt) for m in self.seen["jobs.placements"]
                       if isinstance(m, Placement))

    def events(self, state: JobState) -> list[JobEvent]:
        return [m for m in self.seen["jobs.events"]
                if isinstance(m, JobEvent) and m.state == state and m.source == "scheduler"]

    def snapshot(self) -> SchedulerState | None:
        snaps = [m for m in self.seen["scheduler.state"] if isinstance(m, SchedulerState)]
        return snaps[-1] if snaps else None


async def test_a_second_instance_waits_as_a_standby_and_takes_over(bus: BusSettings) -> None:
    await submit(bus, JobSpec(job_id="a1"), nodes=("n0",))
    env = scheduler_env(bus, f"sched-{uuid.uuid4().hex[:8]}")
    env2 = {**env, "GPUFLEET_SCHEDULER_OPS_PORT": str(free_port())}
    async with Watch(bus) as w:
        with scheduler(env) as first:
            await wait_ready(port_of(env))
            with scheduler(env2) as second:
                await wait_ready(port_of(env2), 503)  # up, and a standby
                await w.until("a1 placed", lambda: w.placed()[("a1", 0)] == 1)
                await asyncio.sleep(3.0)  # time enough to fence the active one, wrongly
                assert first.poll() is None and await readyz(port_of(env)) == 200
                assert await readyz(port_of(env2)) == 503
                first.kill()
                killed = time.monotonic()
                await wait_ready(port_of(env2), 200, timeout=60)
                ready_after = time.monotonic() - killed
                await submit(bus, JobSpec(job_id="a2"))
                await w.until("a2 placed", lambda: w.placed()[("a2", 0)] == 1)
                placed_after = time.monotonic() - killed
                second.terminate()
                assert await asyncio.to_thread(second.wait, 20) == 0
    print(f"\ntakeover after kill -9 of the active scheduler: ready in {ready_after:.1f} s, "
          f"a job submitted then placed {placed_after:.1f} s after the kill")
    assert w.placed() == Counter({("a1", 0): 1, ("a2", 0): 1})


async def test_a_second_instance_that_cannot_serve_its_port_leaves_the_first_alone(
        bus: BusSettings, tmp_path: Path) -> None:
    await submit(bus, nodes=("n0",))
    env = scheduler_env(bus, f"sched-{uuid.uuid4().hex[:8]}")
    async with Watch(bus) as w:
        with scheduler(env) as first:
            await wait_ready(port_of(env))
            log = tmp_path / "second.log"
            with log.open("wb") as err, scheduler(env, err) as second:  # the same ops port
                assert await asyncio.to_thread(second.wait, 30) == 2
            lines = [ln for ln in log.read_text().splitlines() if "ERROR" in ln]
            assert len(lines) == 1 and "without touching the running scheduler" in lines[0]
            await submit(bus, JobSpec(job_id="b1"))
            await w.until("b1 placed", lambda: w.placed()[("b1", 0)] == 1)
            assert first.poll() is None and await readyz(port_of(env)) == 200
            first.terminate()
            assert await asyncio.to_thread(first.wait, 20) == 0


async def samples(bus: BusSettings, alive: dict[str, bool], stop: asyncio.Event) -> None:
    """Each node in ``alive`` sends a sample every 0.3 s while its flag is set."""
    producer = make_producer(bus)
    await producer.start()
    try:
        while not stop.is_set():
            for node, on in alive.items():
                if on:
                    await publish(producer, bus, "gpu.samples",
                                  NodeSample(cluster=bus.cluster, node=node, gpus=[]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.3)
    finally:
        await producer.stop()


async def test_a_silent_node_loses_its_job_which_runs_again_elsewhere(bus: BusSettings) -> None:
    await submit(bus, nodes=("n0", "n1"))
    env = scheduler_env(bus, f"sched-{uuid.uuid4().hex[:8]}", node_lease_s="3",
                        start_timeout_s="0")
    alive = {"n0": True, "n1": True}
    stop = asyncio.Event()
    beats = asyncio.create_task(samples(bus, alive, stop))
    try:
        async with Watch(bus) as w:
            with scheduler(env) as proc:
                await wait_ready(port_of(env))
                await submit(bus, JobSpec(job_id="a", gpus=8), JobSpec(job_id="b", gpus=8))
                await w.until("both placed", lambda: len(w.placed()) == 2)
                where = {m.job.job_id: m.node for m in w.seen["jobs.placements"]
                         if isinstance(m, Placement)}
                gone = where["a"]
                kept = where["b"]
                alive[gone] = False
                await w.until("a lost", lambda: w.events(JobState.LOST), timeout=30)
                await w.until("a queued again", lambda: any(
                    e.job_id == "a" and e.attempt == 1 for e in w.events(JobState.QUEUED)))
                await finish(bus, "b")
                await w.until("a placed again", lambda: w.placed()[("a", 1)] == 1)
                proc.terminate()
                assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        stop.set()
        await beats
    lost = w.events(JobState.LOST)
    assert [(e.job_id, e.node, e.attempt) for e in lost] == [("a", gone, 0)]
    stops = [(m.job_id, m.node, m.reason) for m in w.seen["jobs.placements"]
             if isinstance(m, StopJob)]
    assert stops == [("a", gone, "lost")]
    again = [m.node for m in w.seen["jobs.placements"]
             if isinstance(m, Placement) and m.attempt == 1]
    assert again == [kept]
    assert w.placed() == Counter({("a", 0): 1, ("b", 0): 1, ("a", 1): 1})


async def forget_history(bus: BusSettings) -> None:
    """Delete every record of the job topics, as a short retention would."""
    names = ("jobs.requests", "jobs.events", "jobs.placements")
    tps = [TopicPartition(topic(bus, n), 0) for n in names]
    probe = reader(bus, "jobs.events")
    await probe.start()
    ends = await probe.end_offsets(tps)
    await probe.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bus.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_records({tp: RecordsToDelete(ends[tp]) for tp in tps})
    finally:
        await admin.close()
    probe = reader(bus, "jobs.events")
    await probe.start()
    assert await probe.beginning_offsets(tps) == ends  # nothing of the history is left
    await probe.stop()


async def test_a_job_older_than_the_retention_survives_a_restart(bus: BusSettings) -> None:
    await submit(bus, JobSpec(job_id="old", gpus=8), nodes=("n0",))
    env = scheduler_env(bus, f"sched-{uuid.uuid4().hex[:8]}")
    async with Watch(bus) as w:
        with scheduler(env) as proc:
            await w.until("old placed", lambda: w.placed()[("old", 0)] == 1)
            proc.terminate()
            assert await asyncio.to_thread(proc.wait, 20) == 0
        await forget_history(bus)
        await submit(bus, JobSpec(job_id="new", gpus=8), JobSpec(job_id="old"))
        with scheduler(env) as proc:
            await w.until("the second old is a duplicate",
                          lambda: any("duplicate" in (e.reason or "") and e.job_id == "old"
                                      for e in w.events(JobState.REJECTED)))

            def held() -> bool:
                snap = w.snapshot()
                return snap is not None and [j.job_id for j in snap.running] == ["old"] and [
                    j.job_id for j in snap.queued] == ["new"]

            await w.until("old still holds its GPUs, new waits", held)
            assert w.placed()[("new", 0)] == 0
            await finish(bus, "old")
            await w.until("new placed once old ended", lambda: w.placed()[("new", 0)] == 1)
            proc.terminate()
            assert await asyncio.to_thread(proc.wait, 20) == 0
    assert w.placed() == Counter({("old", 0): 1, ("new", 0): 1})


@contextlib.contextmanager
def report(log: Path) -> Iterator[None]:
    """On a failure, print the scheduler's own lines (pytest shows them with the failure)."""
    try:
        yield
    except BaseException:
        print("".join(ln for ln in log.read_text().splitlines(keepends=True)
                      if "services.scheduler" in ln or "Error" in ln)[-5000:])
        raise


async def test_the_scheduler_rides_out_a_broker_restart(
        local_broker: LocalKafka | None, bus: BusSettings, tmp_path: Path) -> None:
    if local_broker is None:
        pytest.skip("restarts the broker that the tests started; GPUFLEET_KAFKA_BOOTSTRAP is set")
    await submit(bus, JobSpec(job_id="before"), nodes=("n0",))
    env = scheduler_env(bus, f"sched-{uuid.uuid4().hex[:8]}")
    log = tmp_path / "scheduler.log"
    with log.open("wb") as err, scheduler(env, err) as proc, report(log):
        async with Watch(bus) as w:
            await w.until("placed before", lambda: w.placed()[("before", 0)] == 1)
        await asyncio.to_thread(local_broker.stop)
        await asyncio.sleep(10.0)  # the scheduler meets the broker's absence, as in make run
        assert proc.poll() is None, log.read_text()[-2000:]
        await asyncio.to_thread(local_broker.start)
        await submit(bus, JobSpec(job_id="after"))
        async with Watch(bus) as w:
            await w.until("placed after", lambda: w.placed()[("after", 0)] == 1, timeout=90)
            assert w.placed() == Counter({("before", 0): 1, ("after", 0): 1})
        await wait_ready(port_of(env))
        assert proc.poll() is None
        proc.terminate()
        assert await asyncio.to_thread(proc.wait, 20) == 0
    text = log.read_text()
    assert "Traceback" not in text and "exception was never retrieved" not in text
