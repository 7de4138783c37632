"""``gpufleet analytics``: run ingest's stream analytics (one faust worker; see app.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from gpufleet.config import load
from gpufleet.runner import run_service

from .app import create_app
from .config import AnalyticsSettings

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p  # every setting comes from GPUFLEET_* variables or the settings file


def run(args: argparse.Namespace) -> int:
    del args
    settings = load(AnalyticsSettings)
    failed: list[BaseException] = []
    code = run_service(lambda stop: _run(settings, stop, failed), settings.log_level)
    return 1 if failed else code


async def _run(settings: AnalyticsSettings, stop: asyncio.Event,
               failed: list[BaseException]) -> None:
    built = create_app(settings)
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


def main() -> int:
    parser = argparse.ArgumentParser(prog="gpufleet analytics")
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
