"""``gpufleet ingest``: run the stream processor (one or more worker processes)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import subprocess
import sys

from aiokafka.errors import KafkaError

from gpufleet.config import load
from gpufleet.ops import Metrics
from gpufleet.runner import run_service, running, said_in_one_line

from .config import IngestSettings
from .driver import Worker
from .sink import SinkError

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default GPUFLEET_INGEST_WORKERS, 1)")
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Run ingest; what is wrong with a setting, the broker or the warehouse is said in one
    line."""
    return said_in_one_line("gpufleet ingest", lambda: _run(args), {SinkError: str})


def _run(args: argparse.Namespace) -> int:
    settings = load(IngestSettings, ingest_workers=args.workers)
    if settings.ingest_workers > 1 and args.workers != 1:
        return _supervise(settings.ingest_workers)
    # what retrying cannot fix (the warehouse refuses the credentials or the schema, the
    # broker a request): one line, and a non-zero exit
    return run_service(lambda stop: serve(settings, args.worker_index, stop), settings.log_level,
                       name="gpufleet ingest", known={SinkError: str, KafkaError: str})


def _collect_less() -> None:
    """A worker allocates short-lived objects for every GPU sample, and few that live: the
    young generation is collected less often, and what exists at start (modules, settings,
    clients) is never scanned again. About a sixth of ingest's CPU otherwise."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


async def serve(settings: IngestSettings, index: int, stop: asyncio.Event) -> None:
    """Run one worker (the ``index``-th: its ops port is the base port plus ``index``) until
    ``stop``."""
    metrics = Metrics()
    worker = Worker(settings, metrics)
    _collect_less()
    async with running(stop) as service:
        if settings.ingest_ops_port:
            await service.ops(metrics, settings.ingest_ops_host, settings.ingest_ops_port + index,
                              worker.readiness)
        await worker.run(stop)


def _supervise(n: int) -> int:
    """Start ``n`` single workers as child processes; pass SIGTERM/SIGINT on to them."""
    cmd = [sys.executable, "-m", "services.ingest", "--workers", "1"]
    # sessions of their own: a Ctrl-C reaches only us, and each worker gets it once, from here
    children = [subprocess.Popen([*cmd, "--worker-index", str(i)], env=os.environ.copy(),
                                 start_new_session=True)
                for i in range(n)]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes, default=0)


if __name__ == "__main__":
    from gpufleet.cli import main

    sys.exit(main(["ingest", *sys.argv[1:]]))
