"""``gpufleet api``: the status API and the web dashboard."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aiohttp import web
from aiokafka.errors import KafkaConnectionError

from gpufleet.config import load
from gpufleet.runner import run_service, running
from services.api.app import create_app
from services.api.auth import bind_refusal, parse_tokens
from services.api.config import ApiSettings
from services.api.handling import DIED

log = logging.getLogger("services.api")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (GPUFLEET_API_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (GPUFLEET_API_PORT)")


class Died(Exception):
    """A background task of the api ended (it has logged why)."""


async def serve(settings: ApiSettings, stop: asyncio.Event) -> None:
    """Serve the api and the dashboard until ``stop``; a background task of the application
    that ends (``DIED``) stops the process."""
    async with running(stop) as service:
        app = create_app(settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        service.on_exit(runner.cleanup)
        await web.TCPSite(runner, settings.api_host, settings.api_port).start()
        log.info("api and dashboard on http://%s:%d/", settings.api_host, settings.api_port)
        if not settings.api_tokens:
            log.warning("no api tokens set (GPUFLEET_API_TOKENS): every caller on this "
                        "machine is admin")
        service.task("background", _until_died(app[DIED], stop))


async def _until_died(died: asyncio.Event, stop: asyncio.Event) -> None:
    """Return at ``stop``; raise ``Died`` if a background task of the application ends first."""
    waits = [asyncio.ensure_future(e.wait()) for e in (stop, died)]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    if died.is_set():
        raise Died("a background task ended (the line above says why)")


def run(args: argparse.Namespace) -> int:
    settings = load(ApiSettings, api_host=args.host, api_port=args.port)
    refusal = bind_refusal(settings.api_host, parse_tokens(settings.api_tokens))
    if refusal is not None:
        log.error("%s", refusal)
        return 2

    def cannot_start(e: Exception) -> str:
        return (f"cannot start: {e} (Kafka at {settings.kafka_bootstrap}, listening on "
                f"{settings.api_host}:{settings.api_port})")

    return run_service(lambda stop: serve(settings, stop), settings.log_level, name="gpufleet api",
                       known={KafkaConnectionError: cannot_start, OSError: cannot_start})


if __name__ == "__main__":
    from gpufleet.cli import main

    sys.exit(main(["api", *sys.argv[1:]]))
