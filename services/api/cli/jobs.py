"""``gpufleet jobs``: list jobs (filters: tenant, state, time), or show one job; ``--waste``
lists the jobs that left the most GPU-hours idle, with the tenant's totals when one is named."""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
from typing import Any

from services.api.cli import waste
from services.api.cli.client import ApiError, Client, add_connection_arguments, table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument("job_id", nargs="?", help="show this job in detail")
    parser.add_argument("--tenant")
    parser.add_argument("--state")
    parser.add_argument("--since", type=float, help="updated in the last N seconds")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the api's JSON")
    parser.add_argument("--waste", action="store_true",
                        help="requested against used: the most idle GPU-hours first")
    parser.add_argument("--hours", type=float, default=24.0,
                        help="with --waste and --tenant: the tenant's totals over this many hours")


def _age(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    s = max(0.0, now - ts)
    return f"{s:.0f}s" if s < 90 else f"{s / 60:.0f}m" if s < 5400 else f"{s / 3600:.1f}h"


def render_list(body: dict[str, Any], now: float) -> str:
    rows = [[j["job_id"], j["tenant"], j["state"], str(j["gpus"]) if j["gpu_milli"] >= 1000
             else f"{j['gpu_milli'] / 1000:g}", j.get("node") or "-", _age(j.get("submitted"), now),
             _age(j["updated"], now)] for j in body["jobs"]]
    text = table(rows, ["JOB", "TENANT", "STATE", "GPUS", "NODE", "AGE", "UPDATED"])
    shown = len(body["jobs"])
    return f"{text}\n{body['offset'] + 1 if shown else 0}-{body['offset'] + shown} " \
           f"of {body['total']} jobs"


def render_detail(body: dict[str, Any]) -> str:
    j = body["job"]
    lines = [f"job {j['job_id']}  tenant {j['tenant']}  state {j['state']}  gpus {j['gpus']}"
             f"  node {j.get('node') or '-'}"]
    if j.get("reason"):  # only while it applies to the job's state
        lines.append(f"  reason: {j['reason']}")
    if j.get("last_seen"):  # heartbeats, folded into one line
        lines.append(f"  last seen {time.strftime('%H:%M:%S', time.localtime(j['last_seen']))}")
    for p in body["placements"]:
        lines.append(f"  placed on {p['node']} GPU indices {p['gpus']} (member {p['member']})")
    for e in body["events"]:
        when = time.strftime("%H:%M:%S", time.localtime(e["ts"]))
        lines.append(f"  {when} {e['state']:<10} {e.get('node') or ''} {e.get('reason') or ''}")
    if body["util_mean"] is not None:
        lines.append(f"  utilization so far: mean {body['util_mean']} % over "
                     f"{len(body['utilization'])} points")
    lines += waste.detail_lines(body)
    return "\n".join(line.rstrip() for line in lines)


def run(args: argparse.Namespace) -> int:
    client = Client.from_args(args)
    try:
        if args.job_id:
            body = client.get(f"/api/v1/jobs/{urllib.parse.quote(args.job_id, safe='')}")
            print(json.dumps(body, indent=2) if args.json else render_detail(body))
            return 0
        if args.waste:
            print(waste.run(client, args))
            return 0
        since = time.time() - args.since if args.since else None
        body = client.get("/api/v1/jobs", tenant=args.tenant, state=args.state, since=since,
                          limit=args.limit, offset=args.offset)
    except ApiError as e:
        print(f"gpufleet jobs: {e}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2) if args.json else render_list(body, time.time()))
    return 0
