"""Telemetry wiring: tick the node(s) on a fixed cadence and hand the results to the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from gpufleet.ops import Metrics
from gpufleet.outbox import Outbox
from services.telemetry.node import NodeTelemetry

log = logging.getLogger(__name__)


def publish_tick(nodes: Sequence[NodeTelemetry], publisher: Outbox, now: float) -> None:
    """Read every node once; samples, changed inventories and new alerts go to the publisher."""
    for node in nodes:
        tick = node.tick(now)
        publisher.offer_sample(tick.sample)
        if tick.inventory is not None:
            publisher.send("nodes", tick.inventory)
        for alert in tick.alerts:
            log.warning("%s: %s", alert.kind, alert.message)
            publisher.send("alerts", alert)


async def tick_loop(nodes: Sequence[NodeTelemetry], publisher: Outbox, interval_s: float,
                    stop: asyncio.Event, metrics: Metrics | None = None) -> None:
    """Publish every node's inventory, then one sample per node per interval until ``stop``."""
    now = time.time()
    for node in nodes:
        publisher.send("nodes", node.inventory(now))
    next_at = time.monotonic()
    while not stop.is_set():
        started = time.perf_counter()
        publish_tick(nodes, publisher, time.time())
        if metrics is not None:
            metrics.observe("telemetry_tick_seconds", time.perf_counter() - started,
                            help="time to read and queue one tick of every node")
            metrics.set("telemetry_buffered", publisher.buffered, help="messages waiting")
        next_at += interval_s
        delay = next_at - time.monotonic()
        if delay < 0:  # fell behind: skip the missed ticks rather than burst
            next_at = time.monotonic()
            delay = 0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
