"""``gpufleet telemetry --source nvml|sim``: publish this node's GPU samples and inventory."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gpufleet.bus import make_producer
from gpufleet.config import load
from gpufleet.ops import Metrics
from gpufleet.outbox import Outbox
from gpufleet.runner import run_service, running
from gpufleet.running import default_state_dir, file_load
from services.telemetry.config import TelemetrySettings
from services.telemetry.driver import tick_loop
from services.telemetry.node import NodeTelemetry
from services.telemetry.sources import GpuSource
from services.telemetry.sources.nvml import NvmlSource, NvmlUnavailable
from services.telemetry.sources.sim import SimSource


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", choices=["nvml", "sim"], help="GPU source (default: nvml)")
    p.add_argument("--node", help="this node's name (default: the host name)")
    p.add_argument("--interval", type=float, dest="interval_s", help="seconds between samples")


def make_source(settings: TelemetrySettings) -> GpuSource:
    if settings.source == "nvml":
        return NvmlSource()
    state_dir = Path(settings.state_dir) if settings.state_dir else default_state_dir()
    return SimSource(settings.node, settings.sim_gpus, settings.sim_model,
                     load=file_load(state_dir / f"{settings.node}.json"), seed=settings.sim_seed)


def run(args: argparse.Namespace) -> int:
    settings = load(TelemetrySettings, source=args.source, node=args.node,
                    interval_s=args.interval_s)
    try:
        source = make_source(settings)
    except (NvmlUnavailable, ValueError) as e:
        print(f"gpufleet telemetry: {e} (use --source sim without a GPU)", file=sys.stderr)
        return 1
    return run_service(lambda stop: serve(settings, source, stop), settings.log_level,
                       name="gpufleet telemetry")


async def serve(settings: TelemetrySettings, source: GpuSource, stop: asyncio.Event) -> None:
    """Tick and send until ``stop``; a dead task (ticks or sender) stops the process.

    Ready while the sender delivers: connected, and nothing has waited past the deadline.
    """
    metrics = Metrics()
    async with running(stop) as service:
        service.on_exit(source.close)
        node = NodeTelemetry(settings.cluster, settings.node, source,
                             settings.processes_every_s, settings.health_every_s)
        outbox = Outbox(settings, lambda: make_producer(
            settings, request_timeout_ms=int(settings.send_timeout_s * 1000)),
            buffer_samples=settings.buffer_samples, metrics=metrics,
            delivery_timeout_s=settings.delivery_timeout_s)
        service.on_exit(outbox.close)

        async def ready() -> dict[str, bool]:
            return {"sender": outbox.delivering()}

        if settings.telemetry_ops_port:
            await service.ops(metrics, settings.ops_host, settings.telemetry_ops_port, ready)
        service.last("sender", lambda done: outbox.run(done, settings.flush_timeout_s))
        service.task("ticks", tick_loop([node], outbox, settings.interval_s, stop, metrics))


if __name__ == "__main__":
    from gpufleet.cli import main

    sys.exit(main(["telemetry", *sys.argv[1:]]))
