"""``gpufleet analytics``: run ingest's stream analytics (one faust worker; see app.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from gpufleet.config import load
from gpufleet.ops import Metrics, serve_ops
from gpufleet.runner import run_service
from services.ingest.config import IngestSettings

from .app import create_app
from .config import AnalyticsSettings

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p  # every setting comes from GPUFLEET_* variables or the settings file


def run(args: argparse.Namespace) -> int:
    del args
    settings, ingest = load(AnalyticsSettings), load(IngestSettings)
    failed: list[BaseException] = []
    code = run_service(lambda stop: _run(settings, ingest, stop, failed), settings.log_level)
    return 1 if failed else code


async def _run(settings: AnalyticsSettings, ingest: IngestSettings, stop: asyncio.Event,
               failed: list[BaseException]) -> None:
    metrics = Metrics()
    built = create_app(settings, ingest, metrics)
    runner = None
    if settings.analytics_ops_port:
        runner = await serve_ops(metrics, settings.analytics_ops_host,
                                 settings.analytics_ops_port, built.readiness)
    await built.app.start()
    log.info("analytics running as %s", built.app.conf.id)
    try:
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(built.failed.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        failed.extend(built.error)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(built.app.stop(), 30)
        if runner is not None:
            await runner.cleanup()


if __name__ == "__main__":
    from gpufleet.cli import main

    sys.exit(main(["analytics", *sys.argv[1:]]))
