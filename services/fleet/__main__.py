"""``gpufleet fleet-sim``: many simulated GPU nodes in one process (make run, tests, benches)."""

from __future__ import annotations

import argparse
import sys

from gpufleet.config import load
from gpufleet.runner import run_service
from services.fleet.config import FleetSettings
from services.fleet.core import models_of
from services.fleet.driver import serve


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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="gpufleet fleet-sim")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
