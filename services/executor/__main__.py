"""``gpufleet executor``: run the jobs placed on this node and publish what happens to them."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from gpufleet.bus import make_producer
from gpufleet.config import load
from gpufleet.ops import Metrics
from gpufleet.outbox import Outbox
from gpufleet.runner import run_service, running
from gpufleet.running import default_state_dir
from services.executor.config import ExecutorSettings
from services.executor.core import ExecutorCore
from services.executor.driver import NodeExecutor, PlacementReader, Runner
from services.executor.runner import ProcessRunner
from services.executor.simrunner import SimRunner
from services.executor.state import StateFile

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", help="this node's name (default: the host name)")
    p.add_argument("--mode", choices=["process", "sim"], help="run commands or simulate runs")
    p.add_argument("--gpus", type=int, help="GPUs on this node (default: count them with NVML)")


def count_gpus() -> int:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        log.warning("NVML did not start (%s): this node has no GPUs to run jobs on", e)
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        pynvml.nvmlShutdown()


def build(settings: ExecutorSettings, outbox: Outbox) -> NodeExecutor:
    state_dir = Path(settings.state_dir) if settings.state_dir else default_state_dir()
    runner: Runner
    if settings.mode == "sim":
        runner = SimRunner(settings.default_sim_duration_s)
        gpus = 8 if settings.gpus < 0 else settings.gpus
    else:
        runner = ProcessRunner(state_dir / "logs")
        gpus = count_gpus() if settings.gpus < 0 else settings.gpus
    core = ExecutorCore(node=settings.node, gpus=gpus, heartbeat_s=settings.heartbeat_s,
                        max_placement_age_s=settings.max_placement_age_s,
                        busy_wait_s=settings.busy_wait_s,
                        needs_command=runner.needs_command)
    return NodeExecutor(core, runner, outbox, StateFile(state_dir / f"{settings.node}.json"))


def run(args: argparse.Namespace) -> int:
    settings = load(ExecutorSettings, node=args.node, mode=args.mode, gpus=args.gpus)
    return run_service(lambda stop: serve(settings, stop), settings.log_level,
                       name="gpufleet executor")


async def serve(settings: ExecutorSettings, stop: asyncio.Event) -> None:
    """Run placements until ``stop``; a dead task (sender or placements) stops the process.

    Ready while the sender delivers and the placement reader keeps polling.
    """
    metrics = Metrics()
    async with running(stop) as service:
        outbox = Outbox(settings, lambda: make_producer(
            settings, request_timeout_ms=int(settings.send_timeout_s * 1000)),
            buffer_samples=1, metrics=metrics, delivery_timeout_s=settings.delivery_timeout_s)
        service.on_exit(outbox.close)
        executor = build(settings, outbox)
        executor.recover()

        def on_idle() -> None:
            executor.tick()
            executor.summary.say(len(executor.core.jobs))

        reader = PlacementReader(settings, f"executor-{settings.cluster}-{settings.node}",
                                 executor.handle, on_idle, settings.delivery_timeout_s)
        if not await reader.connect(service):
            return
        service.on_exit(executor.close)

        await reader.serve_ops(service, metrics, settings.ops_host,
                               settings.executor_ops_port, outbox)
        log.info("executor of %s: %d GPUs, %s mode", settings.node, executor.core.gpus,
                 settings.mode)
        service.last("sender", lambda done: outbox.run(done, settings.flush_timeout_s))
        service.task("jobs", executor.runner.tasks.watch(stop))
        reader.start(service)


if __name__ == "__main__":
    from gpufleet.cli import main

    sys.exit(main(["executor", *sys.argv[1:]]))
