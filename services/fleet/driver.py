"""Fleet wiring: one producer and one consumer for every simulated node."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from gpufleet.bus import make_consumer, make_producer
from gpufleet.ops import Metrics, serve_ops
from services.executor.driver import TOPICS, consume_commands
from services.executor.state import default_state_dir
from services.fleet.config import FleetSettings
from services.fleet.core import Fleet
from services.telemetry.driver import connect, tick_loop
from services.telemetry.publisher import Publisher

log = logging.getLogger(__name__)


async def serve(settings: FleetSettings, stop: asyncio.Event) -> None:
    """Run the fleet until ``stop`` (or for ``sim_duration_s``), then flush and close."""
    metrics = Metrics()
    producer = await connect(lambda: make_producer(
        settings, request_timeout_ms=int(settings.send_timeout_s * 1000)), stop)
    if producer is None:
        return
    publisher = Publisher(settings, producer, metrics=metrics,
                          buffer_samples=settings.buffer_samples_per_node * settings.sim_nodes)
    state_dir = Path(settings.state_dir) if settings.state_dir else default_state_dir()
    fleet = Fleet(settings, publisher, state_dir / settings.cluster)
    fleet.recover()
    consumer = await connect(lambda: make_consumer(
        settings, TOPICS, group_id=f"fleet-sim-{settings.cluster}"), stop)
    ops = (await serve_ops(metrics, settings.ops_host, settings.fleet_ops_port)
           if settings.fleet_ops_port else None)
    log.info("fleet of %d nodes x %d GPUs (%s), one sample per node every %.1fs",
             settings.sim_nodes, settings.sim_gpus_per_node, settings.sim_models,
             settings.interval_s)
    sender_stop = asyncio.Event()
    tasks = [asyncio.create_task(publisher.run(sender_stop, settings.flush_timeout_s)),
             asyncio.create_task(tick_loop(fleet.telemetry, publisher, settings.interval_s,
                                           stop, metrics))]
    if consumer is not None:
        tasks.append(asyncio.create_task(
            consume_commands(consumer, fleet.dispatch, stop, settings.topic_prefix,
                             on_idle=fleet.heartbeats)))
    if settings.sim_duration_s:
        tasks.append(asyncio.create_task(_stop_after(stop, settings.sim_duration_s)))
    try:
        await stop.wait()
    finally:
        await asyncio.gather(*tasks[1:3], return_exceptions=True)
        for t in tasks[3:]:
            t.cancel()
        await fleet.close()
        if consumer is not None:
            await consumer.stop()
        sender_stop.set()
        await tasks[0]
        with contextlib.suppress(Exception):
            await producer.stop()
        if ops is not None:
            await ops.cleanup()
        log.info("fleet stopped: %d messages sent, %d samples dropped",
                 publisher.sent, publisher.dropped)


async def _stop_after(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    stop.set()
