"""``gpufleet submit``: submit a job from flags or from a job file (JSON or TOML)."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from services.api.cli.client import ApiError, Client, add_connection_arguments

FLAGS = ("job_id", "tenant", "queue", "priority", "gpus", "gpu_milli", "gang", "est_runtime_s",
         "sim_duration_s", "sim_util", "cpu_milli", "memory_mib")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument("-f", "--file", type=Path, help="a job file (.json or .toml); flags win")
    parser.add_argument("--job-id", dest="job_id")
    parser.add_argument("--tenant")
    parser.add_argument("--queue")
    parser.add_argument("--priority", type=int)
    parser.add_argument("--gpus", type=int)
    parser.add_argument("--gpu-milli", dest="gpu_milli", type=int,
                        help="thousandths of one GPU (with --gpus 1)")
    parser.add_argument("--gang", type=int)
    parser.add_argument("--model", dest="gpu_models", action="append",
                        help="acceptable GPU model (repeat)")
    parser.add_argument("--est-runtime", dest="est_runtime_s", type=float)
    parser.add_argument("--sim-duration", dest="sim_duration_s", type=float,
                        help="simulated nodes run the job this long (s)")
    parser.add_argument("--sim-util", dest="sim_util", type=float)
    parser.add_argument("--cpu-milli", dest="cpu_milli", type=int)
    parser.add_argument("--memory-mib", dest="memory_mib", type=int)
    parser.add_argument("--env", action="append", default=[], metavar="K=V", type=key_value,
                        help="an environment variable of the job (repeat it)")
    parser.add_argument("command", nargs="*", help="the command to run (after --)")


def key_value(text: str) -> tuple[str, str]:
    """``K=V`` -> ``("K", "V")``, for argparse."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return key, value


def job_body(args: argparse.Namespace) -> dict[str, Any]:
    """The request body: the file's fields, then the flags."""
    body: dict[str, Any] = {}
    if args.file is not None:
        text = args.file.read_text()
        body = tomllib.loads(text) if args.file.suffix == ".toml" else json.loads(text)
    body.update({k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None})
    if args.gpu_models:
        body["gpu_models"] = args.gpu_models
    if args.env:
        body["env"] = {**body.get("env", {}), **dict(args.env)}
    if args.command:
        body["command"] = args.command
    return body


def run(args: argparse.Namespace) -> int:
    try:
        accepted = Client.from_args(args).post("/api/v1/jobs", job_body(args))
    except (ApiError, OSError, ValueError) as e:
        print(f"gpufleet submit: {e}", file=sys.stderr)
        return 1
    print(f"{accepted['job_id']} {accepted['state']}")
    return 0
