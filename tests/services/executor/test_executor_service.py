"""The executor service on the test broker (sim mode): it runs a placement, reports it, stops a
job given up as lost, and is ready while it delivers and reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from gpufleet.bus import make_consumer, make_producer, publish
from gpufleet.config import BusSettings
from gpufleet.contracts import JobEvent, JobSpec, JobState, Placement, StopJob, decoder_for
from gpufleet.localkafka import free_port
from services.executor.__main__ import serve
from services.executor.config import ExecutorSettings

pytestmark = pytest.mark.integration


async def events_until(bus: BusSettings, job_id: str, state: JobState) -> list[JobEvent]:
    consumer = make_consumer(bus, ["jobs.events"], group_id=None)
    await consumer.start()
    seen: list[JobEvent] = []
    try:
        async with asyncio.timeout(30):
            while not any(e.job_id == job_id and e.state == state for e in seen):
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    seen.extend(decoder_for("jobs.events").decode(r.value) for r in records)
    finally:
        await consumer.stop()
    return [e for e in seen if e.job_id == job_id]


async def test_the_executor_runs_reports_and_stops_lost_jobs(
    bus: BusSettings, tmp_path: Path
) -> None:
    port = free_port()
    settings = ExecutorSettings(
        kafka_bootstrap=bus.kafka_bootstrap, topic_prefix=bus.topic_prefix, cluster=bus.cluster,
        node="n1", mode="sim", gpus=2, state_dir=str(tmp_path), heartbeat_s=0.2,
        ops_host="127.0.0.1", executor_ops_port=port)
    stop = asyncio.Event()
    service = asyncio.create_task(serve(settings, stop))
    producer = make_producer(bus)
    await producer.start()
    try:
        await publish(producer, bus, "jobs.placements", Placement(
            job=JobSpec(job_id="short", sim_duration_s=0.2), node="n1", gpus=[0]))
        await events_until(bus, "short", JobState.SUCCEEDED)
        await publish(producer, bus, "jobs.placements", Placement(
            job=JobSpec(job_id="long", sim_duration_s=600), node="n1", gpus=[1]))
        await events_until(bus, "long", JobState.STARTED)
        await publish(producer, bus, "jobs.placements",
                      StopJob(job_id="long", node="n1", reason="lost"))
        states = [e.state for e in await events_until(bus, "long", JobState.LOST)]
        assert JobState.FAILED not in states and JobState.CANCELLED not in states
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{port}/readyz") as resp:
            body = await resp.json()
            assert (resp.status, body["checks"]) == (200, {"sender": True, "placements": True})
        assert not service.done()
    finally:
        await producer.stop()
        stop.set()
        await service
