"""``gpufleet api``: the status API and the web dashboard."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aiohttp import web
from aiokafka.errors import KafkaConnectionError

from gpufleet.config import load
from gpufleet.runner import run_service
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
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.api_host, settings.api_port).start()
        log.info("api and dashboard on http://%s:%d/", settings.api_host, settings.api_port)
        if not settings.api_tokens:
            log.warning("no api tokens set (GPUFLEET_API_TOKENS): every caller on this "
                        "machine is admin")
        waits = [asyncio.create_task(e.wait()) for e in (stop, app[DIED])]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if app[DIED].is_set():
            raise Died()
    finally:
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    settings = load(ApiSettings, api_host=args.host, api_port=args.port)
    refusal = bind_refusal(settings.api_host, parse_tokens(settings.api_tokens))
    if refusal is not None:
        log.error("%s", refusal)
        return 2
    failures: list[str] = []

    async def main(stop: asyncio.Event) -> None:
        try:
            await serve(settings, stop)
        except Died:
            failures.append("a background task died")
        except (KafkaConnectionError, OSError) as e:
            failures.append(str(e))
            log.error("cannot start: %s (Kafka at %s, listening on %s:%d)", e,
                      settings.kafka_bootstrap, settings.api_host, settings.api_port)

    code = run_service(main, settings.log_level)
    return 1 if failures else code


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="gpufleet api")
    add_arguments(p)
    sys.exit(run(p.parse_args()))
