"""Fleet wiring: one producer and one consumer for every simulated node.

Its tasks (sender, ticks, placements) run supervised: one that dies stops the process. It is
ready while its sender delivers (nothing has waited past the delivery deadline) and its
placement reader keeps polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from gpufleet.bus import connect, make_consumer, make_producer
from gpufleet.ops import Metrics, serve_ops
from gpufleet.outbox import Outbox
from gpufleet.runner import supervise
from gpufleet.running import default_state_dir
from services.executor.driver import TOPICS, consume_commands
from services.fleet.config import FleetSettings
from services.fleet.core import Fleet
from services.telemetry.driver import tick_loop

log = logging.getLogger(__name__)


async def serve(settings: FleetSettings, stop: asyncio.Event) -> None:
    """Run the fleet until ``stop`` (or for ``sim_duration_s``), then flush and close."""
    metrics = Metrics()
    publisher = Outbox(settings, lambda: make_producer(
        settings, request_timeout_ms=int(settings.send_timeout_s * 1000)), metrics=metrics,
        buffer_samples=settings.buffer_samples_per_node * settings.sim_nodes,
        delivery_timeout_s=settings.delivery_timeout_s)
    state_dir = Path(settings.state_dir) if settings.state_dir else default_state_dir()
    fleet = Fleet(settings, publisher, state_dir / settings.cluster)
    fleet.recover()
    consumer = await connect(lambda: make_consumer(
        settings, TOPICS, group_id=f"fleet-sim-{settings.cluster}"), stop)
    if consumer is None:
        return
    polled = [time.monotonic()]

    def on_idle() -> None:
        polled[0] = time.monotonic()
        fleet.heartbeats()

    async def ready() -> dict[str, bool]:
        return {"sender": publisher.delivering(),
                "placements": time.monotonic() - polled[0] < settings.delivery_timeout_s}

    ops = (await serve_ops(metrics, settings.ops_host, settings.fleet_ops_port, ready)
           if settings.fleet_ops_port else None)
    log.info("fleet of %d nodes x %d GPUs (%s), one sample per node every %.1fs",
             settings.sim_nodes, settings.sim_gpus_per_node, settings.sim_models,
             settings.interval_s)
    sender_stop = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as tasks:
            supervise(tasks, "sender", publisher.run(sender_stop, settings.flush_timeout_s),
                      until=sender_stop)
            ticks = supervise(tasks, "ticks", tick_loop(fleet.telemetry, publisher,
                                                        settings.interval_s, stop, metrics),
                              until=stop)
            reader = supervise(tasks, "placements", consume_commands(
                consumer, fleet.dispatch, stop, settings.topic_prefix, on_idle=on_idle),
                until=stop)
            supervise(tasks, "jobs", fleet.tasks.watch(stop), until=stop)
            if settings.sim_duration_s:
                tasks.create_task(_stop_after(stop, settings.sim_duration_s))
            await stop.wait()
            await asyncio.wait([ticks, reader])
            sender_stop.set()
    finally:
        await fleet.close()
        with contextlib.suppress(Exception):
            await consumer.stop()
        await publisher.close()
        if ops is not None:
            await ops.cleanup()
        log.info("fleet stopped: %d messages sent, %d samples dropped",
                 publisher.sent, publisher.dropped)


async def _stop_after(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    stop.set()
