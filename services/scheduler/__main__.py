"""``gpufleet scheduler``: place jobs on GPUs, exactly once over Kafka."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aiokafka.errors import KafkaError

from gpufleet.bus import stop_quietly
from gpufleet.config import load
from gpufleet.ops import Metrics
from gpufleet.retry import kafka_transient
from gpufleet.runner import Known, run_service, running, said_in_one_line
from services.scheduler import driver
from services.scheduler.config import SchedulerSettings
from services.scheduler.election import Election
from services.scheduler.profile import build_profile
from services.scheduler.reading import RecoveryIncomplete, wait_for_topics

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops-port", type=int, default=None,
                        help="port of /metrics, /healthz, /readyz (GPUFLEET_SCHEDULER_OPS_PORT)")


def run(args: argparse.Namespace) -> int:
    """Run the scheduler; what is wrong with a setting or the broker is said in one line."""
    return said_in_one_line("gpufleet scheduler", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    settings = load(SchedulerSettings, scheduler_ops_port=args.ops_port)
    try:
        build_profile(settings)
    except (KeyError, ValueError) as e:
        print(f"gpufleet scheduler: bad plugin settings (GPUFLEET_SCHEDULER_QUEUE_ORDER, _FILTERS, "
              f"_SCORES, _LOOP): {e}", file=sys.stderr)
        return 2
    return run_service(lambda stop: serve(settings, stop), settings.log_level,
                       name="gpufleet scheduler", known=said(settings))


async def serve(settings: SchedulerSettings, stop: asyncio.Event) -> int:
    """Run until ``stop`` is set (0); 2 when the ops port cannot be served. Nothing is fenced
    before the ops port is bound, the topics exist and this instance has won the election;
    an error no retry can fix is raised (``said`` words it in one line)."""
    metrics = Metrics()
    ready = {"active": False, "recovered": False}

    async def readiness() -> dict[str, bool]:
        return dict(ready)

    async with running(stop) as service:
        try:
            await service.ops(metrics, settings.scheduler_ops_host, settings.scheduler_ops_port,
                              readiness)
        except OSError as e:
            log.error("cannot serve /metrics and /readyz on %s:%d (%s); exiting without "
                      "touching the running scheduler", settings.scheduler_ops_host,
                      settings.scheduler_ops_port, e)
            return 2
        if not await wait_for_topics(settings, driver.READS, stop):
            return 0
        election = Election(settings)
        service.on_exit(lambda: stop_quietly(election))
        await election.start()
        await driver.lead(settings, stop, election, metrics, ready)
    return 0


def said(settings: SchedulerSettings) -> Known:
    """How the errors that stop the scheduler are said, in one line each."""
    def kafka(e: Exception) -> str:
        if kafka_transient(e):  # before the first session: the broker is not there at all
            return (f"cannot reach Kafka at {settings.kafka_bootstrap} ({type(e).__name__}: "
                    f"{e}); is GPUFLEET_KAFKA_BOOTSTRAP right and the broker up?")
        return f"a Kafka error that retrying cannot fix: {type(e).__name__}: {e}"

    return {RecoveryIncomplete: lambda e: f"{e}; exiting", KafkaError: kafka,
            Exception: lambda e: f"{type(e).__name__}: {e}"}


if __name__ == "__main__":
    from gpufleet.cli import main

    sys.exit(main(["scheduler", *sys.argv[1:]]))
