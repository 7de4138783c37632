"""``gpufleet scheduler``: place jobs on GPUs, exactly once over Kafka."""

from __future__ import annotations

import argparse
import asyncio
import sys

from gpufleet.config import load
from gpufleet.runner import run_service
from services.scheduler.config import SchedulerSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops-port", type=int, default=None,
                        help="port of /metrics, /healthz, /readyz (GPUFLEET_OPS_PORT)")


def run(args: argparse.Namespace) -> int:
    from services.scheduler import driver

    settings = load(SchedulerSettings, ops_port=args.ops_port)
    code = 0

    async def main(stop: asyncio.Event) -> None:
        nonlocal code
        code = await driver.run(settings, stop)

    run_service(main, settings.log_level)
    return code


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="gpufleet scheduler")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
