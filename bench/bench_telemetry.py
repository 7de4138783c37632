"""Telemetry: CPU per node sample, and how many simulated 8-GPU nodes one core publishes at 1 Hz.

1. One node sample, read and encoded: the NVML source against the fake library (the driver's
   own call latency is not in it) and the simulated source.
2. One node-tick through the whole fleet-sim path (simulated source, executor table, node
   sample, publisher buffer, encoding, the producer's ``send``) against a producer that only
   counts, so the figure is this process's CPU alone; nodes per core = 1 s / that.
3. (full run only) The same fleet against a real local Kafka broker for a few seconds at 1 Hz:
   CPU of this process per node-tick (aiokafka's batching and compression included), and
   what was delivered and dropped.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import Result
from gpufleet.bus import make_producer
from gpufleet.config import BusSettings
from gpufleet.contracts import JobSpec, Placement, encode
from gpufleet.localkafka import LocalKafka, free_port
from gpufleet.outbox import Outbox
from gpufleet.topics import create_topics
from services.fleet.config import FleetSettings
from services.fleet.core import Fleet
from services.telemetry.driver import publish_tick, tick_loop
from services.telemetry.fakenvml import FakeNvml, fake_gpus
from services.telemetry.node import NodeTelemetry
from services.telemetry.sources import GpuSource
from services.telemetry.sources.nvml import NvmlSource
from services.telemetry.sources.sim import SimSource

AIM_NODES = 2000


def _per_sample(source: GpuSource, n: int) -> tuple[float, int]:
    """CPU seconds per node sample (read + encode), and the encoded size."""
    node = NodeTelemetry("bench", "node-0001", source, processes_every_s=5, health_every_s=60)
    size = 0
    t0 = time.time()
    start = time.process_time()
    for i in range(n):
        size = len(encode(node.tick(t0 + i).sample))  # a tick a second: slow groups come due
    return (time.process_time() - start) / n, size


class CountingProducer:
    """Stands in for the producer: ``send`` returns a finished future."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        self.messages += 1
        self.bytes += len(value)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def flush(self) -> None:
        pass


def _busy_fleet(settings: FleetSettings, outbox: Any) -> Fleet:
    """A fleet with a job on half of each node's GPUs, so that loads are not all idle."""
    fleet = Fleet(settings, outbox, state_dir=None)
    for name, node in fleet.nodes.items():
        p = Placement(job=JobSpec(job_id=f"bench-{name}", sim_duration_s=1e9, sim_util=80),
                      node=name, gpus=[0, 1, 2, 3])
        node.executor.core.on_placement(p, p.ts)
        node.executor.core.on_started((p.job.job_id, 0), None, None, p.ts)
    return fleet


async def _fleet_tick_cost(nodes: int, ticks: int) -> tuple[float, int]:
    settings = FleetSettings(sim_nodes=nodes, sim_gpus_per_node=8)
    producer = CountingProducer()
    publisher = Outbox(settings, lambda: producer, buffer_samples=nodes * 2)
    publisher.producer = producer
    fleet = _busy_fleet(settings, publisher)
    t0 = time.time()
    start = time.process_time()
    for i in range(ticks):
        publish_tick(fleet.telemetry, publisher, t0 + i)
        await publisher.flush(60)
    cpu = time.process_time() - start
    return cpu / (nodes * ticks), producer.messages


async def _real_broker_run(nodes: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        broker = LocalKafka(data=Path(tmp), port=free_port(), controller_port=free_port(),
                            heap="512m")
        await asyncio.to_thread(broker.start)
        try:
            bus = BusSettings(kafka_bootstrap=broker.bootstrap, topic_prefix="bench")
            await create_topics(bus, replication_factor=1)
            settings = FleetSettings(kafka_bootstrap=broker.bootstrap, topic_prefix="bench",
                                     sim_nodes=nodes, sim_gpus_per_node=8)
            return await _run_fleet(settings, seconds)
        finally:
            await asyncio.to_thread(broker.stop)


async def _run_fleet(settings: FleetSettings, seconds: float) -> dict[str, float]:
    publisher = Outbox(settings, lambda: make_producer(settings),
                          buffer_samples=settings.sim_nodes * 60)
    fleet = _busy_fleet(settings, publisher)
    stop, sender_stop = asyncio.Event(), asyncio.Event()
    sender = asyncio.create_task(publisher.run(sender_stop, 30))
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    ticker = asyncio.create_task(tick_loop(fleet.telemetry, publisher, 1.0, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await ticker
    sender_stop.set()
    await sender
    cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
    node_ticks = publisher.sent + publisher.dropped - settings.sim_nodes  # less the inventories
    return {"cpu_per_tick": cpu / max(1, node_ticks), "sent": publisher.sent,
            "dropped": publisher.dropped, "cpu_share": cpu / wall}


def run(quick: bool) -> list[Result]:
    n = 300 if quick else 3000
    nvml = NvmlSource(lib=FakeNvml(fake_gpus(8)))
    nvml_cpu, nvml_size = _per_sample(nvml, n)
    nvml.close()
    sim_cpu, sim_size = _per_sample(SimSource("node-0001", 8, seed=1), n)
    nodes, ticks = (200, 3) if quick else (2000, 5)
    per_tick, _ = asyncio.run(_fleet_tick_cost(nodes, ticks))
    per_core = 1.0 / per_tick
    out = [
        Result("telemetry", "CPU per node sample, NVML source (fake lib), 8 GPUs", nvml_cpu * 1e6,
               "µs", note=f"read + encode, {nvml_size} B; real driver call time not included"),
        Result("telemetry", "CPU per node sample, sim source, 8 GPUs", sim_cpu * 1e6, "µs",
               note=f"read + encode, {sim_size} B"),
        Result("telemetry", "CPU per node-tick, fleet-sim path to producer.send", per_tick * 1e6,
               "µs", note=f"{nodes} nodes x {ticks} ticks, half the GPUs busy"),
        Result("telemetry", "8-GPU nodes one core publishes at 1 Hz", per_core, "nodes",
               aim=f">= {AIM_NODES:,} nodes ({AIM_NODES * 8:,} GPUs)",
               note=f"= {per_core * 8:,.0f} GPUs; from the row above"),
    ]
    if not quick:
        real = asyncio.run(_real_broker_run(AIM_NODES, 10.0))
        out.append(Result(
            "telemetry", f"CPU per node-tick, {AIM_NODES:,} nodes at 1 Hz to a local broker",
            real["cpu_per_tick"] * 1e6, "µs",
            aim=f"< {1e6 / AIM_NODES:,.0f} µs",
            note=f"= {1 / real['cpu_per_tick']:,.0f} nodes/core; {real['sent']:,.0f} sent, "
                 f"{real['dropped']:,.0f} dropped, "
                 f"{real['cpu_share']:.0%} of a core (broker on the same machine)"))
    return out
