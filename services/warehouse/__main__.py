"""``gpufleet warehouse serve|migrate``: the embedded ClickHouse endpoint and the schema."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from gpufleet.config import load
from gpufleet.runner import run_service, running
from services.warehouse.config import WarehouseSettings, exposure_problem

log = logging.getLogger("services.warehouse")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    serve = sub.add_parser("serve", help="serve the ClickHouse HTTP interface over embedded chDB")
    serve.add_argument("--data", help="data directory (default: GPUFLEET_WAREHOUSE_DATA)")
    serve.add_argument("--port", type=int, help="port (default: GPUFLEET_WAREHOUSE_PORT, 8123)")
    serve.add_argument("--host", help="address (default: GPUFLEET_WAREHOUSE_HOST, 127.0.0.1)")
    mig = sub.add_parser("migrate", help="apply the schema migrations (idempotent)")
    mig.add_argument("--url", help="ClickHouse URL (default: GPUFLEET_CLICKHOUSE_URL)")


def run(args: argparse.Namespace) -> int:
    if args.action == "serve":
        settings = load(WarehouseSettings, warehouse_data=args.data, warehouse_port=args.port,
                        warehouse_host=args.host)
        problem = exposure_problem(settings)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 2
        return run_service(lambda stop: serve(settings, stop), settings.log_level,
                           name="gpufleet warehouse")
    from services.warehouse.migrate import connect, migrate

    settings = load(WarehouseSettings, clickhouse_url=args.url)
    done = migrate(connect(settings.clickhouse_url))
    print(f"migrations applied: {len(done)}" + "".join(f"\n  {m.version:04d}_{m.name}"
                                                         for m in done))
    return 0


async def serve(settings: WarehouseSettings, stop: asyncio.Event) -> None:
    """Open the data directory, answer on host:port until ``stop`` is set."""
    from aiohttp import web

    from gpufleet.ops import Metrics
    from services.warehouse.engine import Engine  # chDB is loaded only to serve
    from services.warehouse.server import create_app

    async with running(stop) as service:
        engine = Engine(settings.warehouse_data, settings.warehouse_writers,
                        settings.warehouse_readers, settings.warehouse_max_sessions)
        engine.open()
        service.on_exit(engine.close)
        # The engine resolves file() paths against the working directory: make that the
        # warehouse's own user_files folder (ClickHouse's user_files_path), for this process.
        os.chdir(engine.user_files)
        app = create_app(settings, engine, Metrics())
        # a client that goes away cancels its handler, and so its query (handler_cancellation)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                               auto_decompress=False)  # bodies are decoded by wire.decode_body
        await runner.setup()
        service.on_exit(runner.cleanup)
        await web.TCPSite(runner, settings.warehouse_host, settings.warehouse_port).start()
        log.info("warehouse: ClickHouse HTTP interface on http://%s:%d/ (data %s)",
                 settings.warehouse_host, settings.warehouse_port, engine.path)
        await stop.wait()


if __name__ == "__main__":
    from gpufleet.cli import main

    sys.exit(main(["warehouse", *sys.argv[1:]]))
