"""``gpufleet publish-event``: publish one job event, for systems gpufleet did not place jobs
for (a Slurm prolog/epilog, a Kubernetes controller, a notebook hub).

    gpufleet publish-event --job 4242 --state started --node gpu-07 --gpus 0,1 --tenant ml
    echo '{"job_id": "4242", "state": "succeeded"}' | gpufleet publish-event --json -
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import msgspec

from gpufleet.bus import make_producer, publish
from gpufleet.config import BusSettings, load
from gpufleet.contracts import JobEvent, JobState


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="TEXT|-", help="the whole event as JSON ('-': stdin)")
    p.add_argument("--job", help="job id")
    p.add_argument("--state", choices=[s.value for s in JobState])
    p.add_argument("--node")
    p.add_argument("--gpus", help="GPU indices on the node, comma separated: 0,1,3")
    p.add_argument("--tenant")
    p.add_argument("--exit-code", type=int)
    p.add_argument("--reason")
    p.add_argument("--source", default="external", help="who publishes (default: external)")
    p.add_argument("--ts", type=float, help="Unix seconds (default: now)")
    p.add_argument("--attempt", type=int, default=0)


def event_from(args: argparse.Namespace, stdin: str = "") -> JobEvent:
    """The event the arguments describe; raises ValueError saying what is wrong."""
    if args.json is not None:
        text = stdin if args.json == "-" else args.json
        try:
            return msgspec.json.decode(text.encode(), type=JobEvent)
        except msgspec.DecodeError as e:
            raise ValueError(f"not a job event: {e}") from e
    if not args.job or not args.state:
        raise ValueError("give --job and --state, or --json")
    fields: dict[str, object] = {"job_id": args.job, "state": args.state, "source": args.source,
                                 "attempt": args.attempt}
    for name in ("node", "tenant", "exit_code", "reason", "ts"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    if args.gpus:
        try:
            fields["gpus"] = [int(g) for g in args.gpus.split(",") if g.strip()]
        except ValueError as e:
            raise ValueError(f"--gpus must be integers: {args.gpus}") from e
    try:
        return msgspec.convert(fields, type=JobEvent)
    except msgspec.ValidationError as e:
        raise ValueError(str(e)) from e


async def _send(settings: BusSettings, event: JobEvent) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        await publish(producer, settings, "jobs.events", event)
    finally:
        await producer.stop()


def run(args: argparse.Namespace) -> int:
    settings = load(BusSettings)
    try:
        event = event_from(args, sys.stdin.read() if args.json == "-" else "")
    except ValueError as e:
        print(f"gpufleet publish-event: {e}", file=sys.stderr)
        return 2
    asyncio.run(_send(settings, event))
    print(event.event_id)
    return 0
