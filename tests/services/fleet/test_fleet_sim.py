"""End to end on the test broker: a 2-node simulated fleet publishes samples and inventory and
runs a placement to success; a node restarted mid-job reports the job lost; a job's bad input
fails that job only; a job given up as lost is stopped. And on a broker of its own, stopped for
10 s and started again: readiness goes red, then samples and job events flow again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gpufleet.bus import make_consumer, make_producer, publish
from gpufleet.config import BusSettings
from gpufleet.contracts import (
    JobEvent,
    JobSpec,
    JobState,
    NodeInventory,
    NodeSample,
    Placement,
    StopJob,
    decoder_for,
)
from gpufleet.localkafka import LocalKafka, free_port
from gpufleet.topics import create_topics
from services.executor.core import LOST_REASON
from services.fleet.__main__ import serve
from services.fleet.config import FleetSettings

pytestmark = pytest.mark.integration


def fleet_settings(bus: BusSettings, state_dir: Path) -> FleetSettings:
    return FleetSettings(kafka_bootstrap=bus.kafka_bootstrap, topic_prefix=bus.topic_prefix,
                         cluster=bus.cluster, sim_nodes=2, sim_gpus_per_node=4,
                         sim_models="H100-80GB,A100-80GB", interval_s=0.2, heartbeat_s=0.3,
                         state_dir=str(state_dir), fleet_ops_port=0, send_timeout_s=5)


class Reader:
    """Everything on some topics, decoded, as it arrives."""

    def __init__(self, bus: BusSettings, names: list[str]) -> None:
        self._consumer = make_consumer(bus, names, group_id=None)
        self._bus = bus
        self.seen: list[Any] = []

    async def __aenter__(self) -> Reader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def until(self, want: Any, timeout: float = 30) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                for m in self.seen:
                    if want(m):
                        return m
                for tp, records in (await self._consumer.getmany(timeout_ms=200)).items():
                    name = tp.topic.removeprefix(self._bus.topic_prefix + ".")
                    self.seen.extend(decoder_for(name).decode(r.value) for r in records)


def job_is(job_id: str, state: JobState) -> Any:
    return lambda m: isinstance(m, JobEvent) and m.job_id == job_id and m.state == state


async def place(bus: BusSettings, p: Placement | StopJob) -> None:
    producer = make_producer(bus)
    await producer.start()
    try:
        await publish(producer, bus, "jobs.placements", p)
    finally:
        await producer.stop()


async def test_a_two_node_fleet_publishes_and_runs_a_job(bus: BusSettings, tmp_path: Path) -> None:
    stop = asyncio.Event()
    fleet = asyncio.create_task(serve(fleet_settings(bus, tmp_path), stop))
    try:
        async with Reader(bus, ["gpu.samples", "nodes", "jobs.events"]) as r:
            inv = await r.until(lambda m: isinstance(m, NodeInventory) and m.node == "sim-0001")
            assert [g.model for g in inv.gpus] == ["A100-80GB"] * 4
            await r.until(lambda m: isinstance(m, NodeSample) and m.node == "sim-0000")
            job = JobSpec(job_id="e2e-1", sim_duration_s=0.8, sim_util=90)
            await place(bus, Placement(job=job, node="sim-0001", gpus=[1, 2]))
            started = await r.until(job_is("e2e-1", JobState.STARTED))
            assert (started.node, started.gpus) == ("sim-0001", [1, 2])
            busy = await r.until(lambda m: isinstance(m, NodeSample) and m.node == "sim-0001"
                                 and (m.gpus[1].util_gpu or 0) > 80)
            assert (busy.gpus[0].util_gpu or 0) <= 1
            done = await r.until(job_is("e2e-1", JobState.SUCCEEDED))
            assert done.exit_code == 0
            await place(bus, Placement(job=JobSpec(job_id="e2e-2"), node="sim-0000", gpus=[4]))
            refused = await r.until(job_is("e2e-2", JobState.FAILED))
            assert refused.reason == "GPU 4 is not on node sim-0000 (it has GPUs 0-3)"
    finally:
        stop.set()
        await fleet


async def test_a_restarted_fleet_reports_the_jobs_it_lost(
    bus: BusSettings, tmp_path: Path
) -> None:
    settings = fleet_settings(bus, tmp_path)
    async with Reader(bus, ["jobs.events"]) as r:
        stop = asyncio.Event()
        fleet = asyncio.create_task(serve(settings, stop))
        job = JobSpec(job_id="long", sim_duration_s=600)
        await place(bus, Placement(job=job, node="sim-0000", gpus=[0]))
        await r.until(job_is("long", JobState.STARTED))
        stop.set()
        await fleet
        stop = asyncio.Event()
        fleet = asyncio.create_task(serve(settings, stop))
        try:
            lost = await r.until(job_is("long", JobState.LOST))
            assert lost.reason == LOST_REASON
        finally:
            stop.set()
            await fleet


async def test_a_job_with_a_bad_sim_exit_fails_and_the_node_goes_on(
    bus: BusSettings, tmp_path: Path
) -> None:
    stop = asyncio.Event()
    fleet = asyncio.create_task(serve(fleet_settings(bus, tmp_path), stop))
    try:
        async with Reader(bus, ["jobs.events"]) as r:
            boom = JobSpec(job_id="boom", env={"GPUFLEET_SIM_EXIT": "boom"})
            await place(bus, Placement(job=boom, node="sim-0000", gpus=[0]))
            failed = await r.until(job_is("boom", JobState.FAILED))
            assert failed.reason == ("did not start: GPUFLEET_SIM_EXIT must be an exit code"
                                     " from -255 to 255, not 'boom'")
            ok = JobSpec(job_id="after-boom", sim_duration_s=0.2)
            await place(bus, Placement(job=ok, node="sim-0000", gpus=[0]))
            await r.until(job_is("after-boom", JobState.SUCCEEDED))
            assert not fleet.done()
    finally:
        stop.set()
        await fleet


async def test_a_job_given_up_as_lost_is_stopped_and_reported_lost(
    bus: BusSettings, tmp_path: Path
) -> None:
    stop = asyncio.Event()
    fleet = asyncio.create_task(serve(fleet_settings(bus, tmp_path), stop))
    try:
        async with Reader(bus, ["jobs.events"]) as r:
            job = JobSpec(job_id="given-up", sim_duration_s=600)
            await place(bus, Placement(job=job, node="sim-0001", gpus=[2]))
            await r.until(job_is("given-up", JobState.STARTED))
            await place(bus, StopJob(job_id="given-up", node="sim-0001", reason="lost"))
            lost = await r.until(job_is("given-up", JobState.LOST))
            assert (lost.source, lost.reason, lost.gpus) == ("executor", "lost", [2])
            with contextlib.suppress(TimeoutError):  # read on for a few heartbeat intervals
                await r.until(lambda m: False, timeout=1.5)
            after = [m.state for m in r.seen if isinstance(m, JobEvent)
                     and m.job_id == "given-up" and m.ts > lost.ts]
            assert after == []
    finally:
        stop.set()
        await fleet


RECOVERY_BOUND_S = 60  # from the broker's restart to events flowing again


async def readyz(port: int) -> int:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{port}/readyz", timeout=aiohttp.ClientTimeout(total=5)) as resp:
        return resp.status


async def until_ready_is(port: int, status: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while await readyz(port) != status:
            await asyncio.sleep(0.2)


async def test_after_a_broker_restart_samples_and_job_events_flow_again(
    own_broker: LocalKafka, tmp_path: Path
) -> None:
    bus = BusSettings(kafka_bootstrap=own_broker.bootstrap, topic_prefix="restart", cluster="t")
    await create_topics(bus, replication_factor=1, partitions=1)
    port = free_port()
    settings = FleetSettings(
        kafka_bootstrap=bus.kafka_bootstrap, topic_prefix=bus.topic_prefix, cluster=bus.cluster,
        sim_nodes=2, sim_gpus_per_node=4, interval_s=0.2, heartbeat_s=0.3,
        state_dir=str(tmp_path), ops_host="127.0.0.1", fleet_ops_port=port,
        send_timeout_s=2, delivery_timeout_s=5)
    stop = asyncio.Event()
    fleet = asyncio.create_task(serve(settings, stop))
    try:
        async with Reader(bus, ["jobs.events"]) as r:
            # a job that ends while the broker is away: its end must still be reported
            job = JobSpec(job_id="across", sim_duration_s=4)
            await place(bus, Placement(job=job, node="sim-0000", gpus=[0]))
            await r.until(job_is("across", JobState.STARTED))
        await until_ready_is(port, 200, timeout=30)

        await asyncio.to_thread(own_broker.stop)
        stopped = time.monotonic()
        await until_ready_is(port, 503, timeout=30)  # the sender cannot deliver: not ready
        await asyncio.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
        await asyncio.to_thread(own_broker.start)
        restarted = time.time()

        async with asyncio.timeout(RECOVERY_BOUND_S):
            async with Reader(bus, ["jobs.events", "gpu.samples"]) as r:
                done = await r.until(job_is("across", JobState.SUCCEEDED), RECOVERY_BOUND_S)
                assert done.node == "sim-0000"
                await r.until(lambda m: isinstance(m, NodeSample) and m.ts > restarted,
                              RECOVERY_BOUND_S)
                after = JobSpec(job_id="after", sim_duration_s=0.2)
                await place(bus, Placement(job=after, node="sim-0001", gpus=[3]))
                await r.until(job_is("after", JobState.SUCCEEDED), RECOVERY_BOUND_S)
            await until_ready_is(port, 200, RECOVERY_BOUND_S)
        assert not fleet.done()
    finally:
        stop.set()
        await fleet
