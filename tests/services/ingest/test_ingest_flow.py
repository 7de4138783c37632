"""Integration: the worker on the real broker and warehouse."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import msgspec
import pytest
from ingest_builders import eventually, make_event, make_placement, make_sample, unique

from gpufleet.bus import make_consumer, make_producer, publish, topic
from gpufleet.config import BusSettings
from gpufleet.contracts import (
    Alert,
    AlertState,
    DeadLetter,
    GpuInfo,
    GpuUtilWindow,
    JobState,
    NodeInventory,
    NodeSample,
    decoder_for,
    encode,
)
from services.ingest.config import IngestSettings

pytestmark = pytest.mark.integration

M0 = float(int(time.time() // 60 * 60) - 3600)  # a whole minute, an hour ago


async def send_all(bus: BusSettings, msgs: list[Any], name: str = "gpu.samples") -> None:
    producer = make_producer(bus)
    await producer.start()
    try:
        for m in msgs:
            await publish(producer, bus, name, m)
    finally:
        await producer.stop()


async def read_topic(bus: BusSettings, name: str, n: int, timeout: float = 30) -> list[Any]:
    consumer = make_consumer(bus, [name], None)
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                out.extend(decoder_for(name).decode(r.value) for r in records)
    finally:
        await consumer.stop()
    return out


def minute_of(node: str, gpus: int, utils: list[float], start: float = M0) -> list[NodeSample]:
    """Samples every 10 s from ``start``: sample i has utilization utils[i] on every GPU."""
    out = []
    for i, u in enumerate(utils):
        b = make_sample(node).at(start + 10 * i)
        for g in range(gpus):
            b.gpu(g, u + g, energy_mj=1000 * i, power_mw=200_000)
        out.append(b.build())
    return out


def closer(node: str, ts: float) -> NodeSample:
    """A sample far enough ahead to close the windows before it."""
    return make_sample(node).at(ts).gpu(0, 1.0).build()


async def test_samples_reach_raw_and_minute_tables(settings: IngestSettings, ch: Any,
                                                   start_worker: Any) -> None:
    node = unique("raw")
    utils = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    await send_all(settings, [*minute_of(node, 2, utils), closer(node, M0 + 130)])
    await start_worker(settings)
    q = f"SELECT count() FROM gpu_samples WHERE node = '{node}'"
    assert await eventually(lambda: ch.query(q).result_rows[0][0], 13) == 13
    q = ("SELECT gpu, samples, util_mean, util_min, util_max, util_p95, power_mw_mean, "
         f"energy_mj FROM gpu_util_1m WHERE node = '{node}' AND window_start = {int(M0)} "
         "ORDER BY gpu")
    rows = await eventually(lambda: ch.query(q).result_rows, [
        (0, 6, 35.0, 10.0, 60.0, 60.0, 200_000.0, 5000),
        (1, 6, 36.0, 11.0, 61.0, 61.0, 200_000.0, 5000)])
    assert rows == [(0, 6, 35.0, 10.0, 60.0, 60.0, 200_000.0, 5000),
                    (1, 6, 36.0, 11.0, 61.0, 61.0, 200_000.0, 5000)]
    published = await read_topic(settings, "gpu.util", 2)
    assert {(w.node, w.gpu, w.window_start, w.samples) for w in published} == {
        (node, 0, M0, 6), (node, 1, M0, 6)}
    assert all(isinstance(w, GpuUtilWindow) for w in published)


async def test_external_job_is_stored_and_attributed_mid_minute(
        settings: IngestSettings, ch: Any, start_worker: Any) -> None:
    node, job = unique("slurm"), unique("job")
    env = {"GPUFLEET_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "GPUFLEET_TOPIC_PREFIX": settings.topic_prefix}
    for state, ts in (("started", M0 + 20), ("succeeded", M0 + 40)):
        args = ["--job", job, "--state", state, "--node", node, "--gpus", "1",
                "--tenant", "physics", "--source", "slurm", "--ts", str(ts)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gpufleet.cli", "publish-event", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
    await send_all(settings, [*minute_of(node, 2, [5.0] * 6), *minute_of(node, 2, [5.0] * 6,
                                                                          start=M0 + 60),
                              closer(node, M0 + 200)])
    await start_worker(settings)
    q = (f"SELECT state, node, gpus, tenant, source FROM job_events WHERE job_id = '{job}' "
         "ORDER BY ts")
    assert await eventually(lambda: ch.query(q).result_rows, [
        ("started", node, [1], "physics", "slurm"),
        ("succeeded", node, [1], "physics", "slurm")]) == [
        ("started", node, [1], "physics", "slurm"), ("succeeded", node, [1], "physics", "slurm")]
    q = (f"SELECT window_start, gpu, job_id, tenant FROM gpu_util_1m WHERE node = '{node}' "
         "ORDER BY window_start, gpu")
    expected = [(M0, 0, None, None), (M0, 1, job, "physics"),
                (M0 + 60, 0, None, None), (M0 + 60, 1, None, None)]
    got = await eventually(lambda: [(r[0].timestamp(), *r[1:]) for r in ch.query(q).result_rows],
                           expected)
    assert got == expected


async def test_idle_allocated_gpu_raises_then_clears_an_alert(
        settings: IngestSettings, ch: Any, start_worker: Any) -> None:
    node, job = unique("idle"), unique("job")
    await send_all(settings, [make_event(job).on(node, 0).tenant("t9").at(M0 + 1).build()],
                   "jobs.events")
    idle = [s for m in range(3) for s in minute_of(node, 1, [1.0] * 6, start=M0 + 60 * m)]
    busy = minute_of(node, 1, [90.0] * 6, start=M0 + 180)
    await send_all(settings, [*idle, *busy, closer(node, M0 + 330)])
    await start_worker(settings)
    q = (f"SELECT state, job_id, tenant, gpu, alert_id FROM alerts WHERE node = '{node}' "
         "ORDER BY ts")
    rows = await eventually(lambda: [r[:4] for r in ch.query(q).result_rows],
                            [("firing", job, "t9", 0), ("resolved", job, "t9", 0)])
    assert rows == [("firing", job, "t9", 0), ("resolved", job, "t9", 0)]
    alerts = [a for a in await read_topic(settings, "alerts", 2) if isinstance(a, Alert)]
    assert [a.state for a in alerts] == [AlertState.FIRING, AlertState.RESOLVED]
    assert alerts[0].alert_id == alerts[1].alert_id


async def test_bad_messages_go_to_the_dlq_with_reasons(
        settings: IngestSettings, ch: Any, start_worker: Any) -> None:
    node = unique("bad")
    good = make_sample(node).at(M0).gpu(0, 10.0).build()

    def variant(**gpu: Any) -> bytes:
        raw = json.loads(encode(good))
        raw["gpus"][0].update(gpu)
        return json.dumps(raw).encode()

    future = encode(make_sample(node).at(time.time() + 86_400).gpu(0).build())
    bad = [b"not json", variant(util_gpu=150), variant(mem_used_bytes=-1), future,
           encode(make_event("j").state(JobState.STARTED).build()).replace(b'"started"',
                                                                           b'"dancing"')]
    producer = make_producer(settings)
    await producer.start()
    try:
        for i, value in enumerate(bad):
            name = "jobs.events" if i == len(bad) - 1 else "gpu.samples"
            await producer.send_and_wait(topic(settings, name), value, key=node.encode())
        await producer.send_and_wait(topic(settings, "gpu.samples"), encode(good),
                                     key=node.encode())
    finally:
        await producer.stop()
    await start_worker(settings)
    letters = [d for d in await read_topic(settings, "dlq", 5) if isinstance(d, DeadLetter)]
    reasons = sorted(d.reason for d in letters)
    assert len(letters) == 5, reasons
    assert sum("does not decode" in r for r in reasons) == 4
    assert sum("in the future" in r for r in reasons) == 1
    assert {d.value for d in letters} == set(bad)
    q = f"SELECT count() FROM gpu_samples WHERE node = '{node}'"
    assert await eventually(lambda: ch.query(q).result_rows[0][0], 1) == 1


def test_dead_letters_decode() -> None:
    assert msgspec.json.decode(encode(DeadLetter(topic="t", partition=0, offset=1,
                                                 reason="r")), type=DeadLetter).reason == "r"


async def test_placements_and_inventory_are_stored(settings: IngestSettings, ch: Any,
                                                   start_worker: Any) -> None:
    node, job = unique("inv"), unique("job")
    inventory = NodeInventory(cluster="test", node=node, driver_version="570.1", gpus=[
        GpuInfo(index=i, uuid=f"GPU-{node}-{i}", model="H100", memory_total_bytes=80 << 30)
        for i in range(2)])
    await send_all(settings, [inventory], "nodes")
    await send_all(settings, [make_placement(job, node, 1, tenant="bio")], "jobs.placements")
    await start_worker(settings)
    q = f"SELECT gpu, model, driver_version FROM nodes WHERE node = '{node}' ORDER BY gpu"
    expected = [(0, "H100", "570.1"), (1, "H100", "570.1")]
    assert await eventually(lambda: ch.query(q).result_rows, expected) == expected
    q = f"SELECT node, gpus, tenant FROM placements WHERE job_id = '{job}'"
    assert await eventually(lambda: ch.query(q).result_rows, [(node, [1], "bio")]) == [
        (node, [1], "bio")]
