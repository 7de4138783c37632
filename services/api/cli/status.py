"""``gpufleet status``: the cluster summary."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from services.api.cli.client import ApiError, Client, add_connection_arguments, table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the api's JSON")


def render(s: dict[str, Any]) -> str:
    lines = [
        f"cluster {s['cluster']}: {s['nodes_online']}/{s['nodes']} nodes, {s['gpus']} GPUs",
        f"allocated {s['allocated_share']:.1%}  busy {s['busy_share']:.1%}  "
        f"power {s['power_w'] / 1000:.1f} kW",
        f"queue {s['queue_depth']}  running {s['running_jobs']}  "
        f"idle allocated GPUs {s['idle_allocated_gpus']} "
        f"({s['idle_allocated_gpu_hours']:.2f} GPU-h)  open alerts {s['open_alerts']}",
        "",
    ]
    rows = [[m["model"], str(m["gpus"]), str(m["free"]), str(m["allocated"]), str(m["busy"]),
             str(m["unhealthy"])] for m in s["gpus_by_model"]]
    lines.append(table(rows, ["MODEL", "GPUS", "FREE", "ALLOCATED", "BUSY", "UNHEALTHY"]))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        summary = Client.from_args(args).get("/api/v1/cluster")
    except ApiError as e:
        print(f"gpufleet status: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    return 0
