"""``gpufleet scheduler``: place jobs on GPUs, exactly once over Kafka."""

from __future__ import annotations

import argparse
import asyncio
import sys

from gpufleet.config import load
from gpufleet.runner import run_service, said_in_one_line
from services.scheduler.config import SchedulerSettings
from services.scheduler.profile import build_profile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops-port", type=int, default=None,
                        help="port of /metrics, /healthz, /readyz (GPUFLEET_SCHEDULER_OPS_PORT)")


def run(args: argparse.Namespace) -> int:
    """Run the scheduler; what is wrong with a setting or the broker is said in one line."""
    return said_in_one_line("gpufleet scheduler", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from services.scheduler import driver

    settings = load(SchedulerSettings, scheduler_ops_port=args.ops_port)
    try:
        build_profile(settings)
    except (KeyError, ValueError) as e:
        print(f"gpufleet scheduler: bad plugin settings (GPUFLEET_SCHEDULER_QUEUE_ORDER, _FILTERS, "
              f"_SCORES, _LOOP): {e}", file=sys.stderr)
        return 2
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
