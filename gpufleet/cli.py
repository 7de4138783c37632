"""The ``gpufleet`` command. Each subcommand lives in its own module, imported only when used.

A command module has ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

# name -> (module, one line of help). A command whose module is not there yet is not offered.
COMMANDS: dict[str, tuple[str, str]] = {
    # the stack and the bus
    "up": ("gpufleet.admin.up_cmd", "run the whole stack on this machine (make run)"),
    "config": ("gpufleet.admin.config_cmd", "print the effective settings"),
    "topics": ("gpufleet.admin.topics_cmd", "create the Kafka topics (idempotent)"),
    "schemas": ("gpufleet.admin.schemas_cmd", "write or check the JSON Schemas of the topics"),
    "kafka": ("gpufleet.admin.kafka_cmd", "run a local Kafka broker (KRaft) for one machine"),
    # services
    "warehouse": ("services.warehouse.__main__", "ClickHouse schema migrations; embedded endpoint"),
    "telemetry": ("services.telemetry.__main__", "publish GPU samples of this node (NVML or sim)"),
    "executor": ("services.executor.__main__", "run the jobs placed on this node"),
    "fleet-sim": ("services.fleet.__main__", "a simulated fleet: telemetry + executor per node"),
    "ingest": ("services.ingest.__main__", "stream processor: samples and events to ClickHouse"),
    "analytics": ("services.ingest.analytics.__main__", "idle, reclaim, drain, right-sizing"),
    "scheduler": ("services.scheduler.__main__", "place jobs on GPUs (exactly-once over Kafka)"),
    "api": ("services.api.__main__", "status API and web dashboard"),
    # tools
    "sql": ("services.warehouse.sql_cmd", "run a SQL query against the warehouse"),
    "cluster-sql": ("gpufleet.admin.cluster_sql_cmd", "warehouse schema for a ClickHouse cluster"),
    "sim": ("services.scheduler.sim_cmd", "replay a cluster trace through the placement policies"),
    "demo-workload": ("services.scheduler.demo_cmd", "submit a stream of demo jobs"),
    "publish-event": ("services.ingest.publish_cmd", "publish a job event (for other systems)"),
    "submit": ("services.api.cli.submit", "submit a job"),
    "jobs": ("services.api.cli.jobs", "list jobs"),
    "cancel": ("services.api.cli.cancel", "cancel a job"),
    "status": ("services.api.cli.status", "cluster summary"),
    "top": ("services.api.cli.top", "live terminal view of the fleet and the queue"),
}


def available() -> dict[str, tuple[str, str]]:
    """The commands whose modules exist in this installation."""
    return {n: c for n, c in COMMANDS.items() if _exists(c[0])}


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpufleet",
        description="GPU fleet observability, scheduling and utilization analytics.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {n:<14} {h}" for n, (_, h) in available().items()),
    )
    p.add_argument("command", choices=sorted(available()), metavar="COMMAND")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in available():
        _parser().parse_args(argv[:1] or ["--help"])
        return 2
    name = argv[0]
    module_name, help_line = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"gpufleet {name}", description=help_line)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from gpufleet.runner import said_in_one_line

    try:
        return said_in_one_line(f"gpufleet {name}", lambda: int(module.run(args) or 0))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
