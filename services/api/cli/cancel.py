"""``gpufleet cancel JOB``: ask the scheduler to cancel a job."""

from __future__ import annotations

import argparse
import sys
import urllib.parse

from services.api.cli.client import ApiError, Client, add_connection_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument("job_id")
    parser.add_argument("--reason", default="cancelled by user")


def run(args: argparse.Namespace) -> int:
    path = f"/api/v1/jobs/{urllib.parse.quote(args.job_id, safe='')}/cancel"
    try:
        accepted = Client.from_args(args).post(path, {"reason": args.reason})
    except ApiError as e:
        print(f"gpufleet cancel: {e}", file=sys.stderr)
        return 1
    print(f"{accepted['job_id']} {accepted['state']}")
    return 0
