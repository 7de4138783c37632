"""End to end on the test broker: a 2-node simulated fleet publishes samples and inventory and
runs a placement to success; a node restarted mid-job reports the job lost."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

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
from services.executor.core import LOST_REASON
from services.fleet.config import FleetSettings
from services.fleet.driver import serve

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
            lost = await r.until(job_is("long", JobState.FAILED))
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
