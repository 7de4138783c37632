"""``gpufleet fleet-sim``: many simulated GPU nodes in one process (make run, tests, benches)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

from gpufleet.bus import make_producer
from gpufleet.config import load
from gpufleet.ops import Metrics
from gpufleet.outbox import Outbox
from gpufleet.runner import run_service, running
from gpufleet.running import default_state_dir
from services.executor.driver import PlacementReader
from services.fleet.config import FleetSettings
from services.fleet.core import Fleet, models_of
from services.telemetry.driver import tick_loop

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, help="simulated nodes (default: GPUFLEET_SIM_NODES or 16)")
    p.add_argument("--gpus-per-node", type=int, help="GPUs per node (default 8)")
    p.add_argument("--models", help="GPU models given to the nodes in turn: H100-80GB,A100-80GB")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--interval", type=float, help="seconds between samples (default 1)")


def run(args: argparse.Namespace) -> int:
    settings = load(FleetSettings, sim_nodes=args.nodes, sim_gpus_per_node=args.gpus_per_node,
                    sim_models=args.models, sim_duration_s=args.duration,
                    interval_s=args.interval)
    try:
        models_of(settings.sim_models)
    except ValueError as e:
        print(f"gpufleet fleet-sim: {e}", file=sys.stderr)
        return 2
    return run_service(lambda stop: serve(settings, stop), settings.log_level,
                       name="gpufleet fleet-sim")


async def serve(settings: FleetSettings, stop: asyncio.Event) -> None:
    """Run the fleet until ``stop`` (or for ``sim_duration_s``), then flush and close.

    One producer and one consumer for every simulated node. Its tasks (sender, ticks,
    placements) run supervised: one that dies stops the process. It is ready while its sender
    delivers (nothing has waited past the delivery deadline) and its placement reader keeps
    polling.
    """
    metrics = Metrics()
    async with running(stop) as service:
        outbox = Outbox(settings, lambda: make_producer(
            settings, request_timeout_ms=int(settings.send_timeout_s * 1000)), metrics=metrics,
            buffer_samples=settings.buffer_samples_per_node * settings.sim_nodes,
            delivery_timeout_s=settings.delivery_timeout_s)
        service.on_exit(lambda: log.info("fleet stopped: %d messages sent, %d samples dropped",
                                         outbox.sent, outbox.dropped))
        service.on_exit(outbox.close)
        state_dir = Path(settings.state_dir) if settings.state_dir else default_state_dir()
        fleet = Fleet(settings, outbox, state_dir / settings.cluster)
        fleet.recover()
        reader = PlacementReader(settings, f"fleet-sim-{settings.cluster}", fleet.dispatch,
                                 fleet.heartbeats, settings.delivery_timeout_s)
        if not await reader.connect(service):
            return
        service.on_exit(fleet.close)

        await reader.serve_ops(service, metrics, settings.ops_host, settings.fleet_ops_port, outbox)
        log.info("fleet of %d nodes x %d GPUs (%s), one sample per node every %.1fs",
                 settings.sim_nodes, settings.sim_gpus_per_node, settings.sim_models,
                 settings.interval_s)
        service.last("sender", lambda done: outbox.run(done, settings.flush_timeout_s))
        service.task("ticks", tick_loop(fleet.telemetry, outbox, settings.interval_s, stop,
                                        metrics))
        reader.start(service)
        service.task("jobs", fleet.tasks.watch(stop))
        if settings.sim_duration_s:
            service.task("duration", _stop_after(stop, settings.sim_duration_s))


async def _stop_after(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    stop.set()


if __name__ == "__main__":
    from gpufleet.cli import main

    sys.exit(main(["fleet-sim", *sys.argv[1:]]))
