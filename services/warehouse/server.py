"""The endpoint's aiohttp application and its lifetime."""

from __future__ import annotations

import asyncio
import functools
import logging
import os

from aiohttp import web

from gpufleet.ops import Metrics, add_ops_routes
from services.warehouse.auth import users_from
from services.warehouse.config import WarehouseSettings
from services.warehouse.engine import Engine
from services.warehouse.handler import Context, Limits, handle
from services.warehouse.sessions import Sessions

log = logging.getLogger(__name__)
MAX_BODY = 1 << 30  # one insert may carry up to 1 GiB


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="Ok.\n")


def create_app(settings: WarehouseSettings, engine: Engine, metrics: Metrics) -> web.Application:
    sessions = Sessions(settings.warehouse_session_timeout_s,
                        lambda ro: engine.new_handle(readonly=ro), engine.close_handle,
                        settings.warehouse_max_sessions)
    limits = Limits(settings.warehouse_analyst_max_queries,
                    settings.warehouse_analyst_max_execution_time_s)
    ctx = Context(engine, users_from(settings), sessions, metrics, limits)
    app = web.Application(client_max_size=MAX_BODY)
    query = functools.partial(handle, ctx)
    app.router.add_route("GET", "/", query)
    app.router.add_route("POST", "/", query)
    app.router.add_get("/ping", _ok)
    app.router.add_get("/replicas_status", _ok)
    add_ops_routes(app, metrics)

    async def end_sessions(_: web.Application) -> None:
        sessions.close()

    app.on_cleanup.append(end_sessions)
    return app


async def serve(settings: WarehouseSettings, stop: asyncio.Event) -> None:
    """Open the data directory, answer on host:port until ``stop`` is set."""
    engine = Engine(settings.warehouse_data, settings.warehouse_writers,
                    settings.warehouse_readers, settings.warehouse_max_sessions)
    engine.open()
    # The engine resolves file() paths against the working directory: make that the
    # warehouse's own user_files folder (ClickHouse's user_files_path), for this process.
    os.chdir(engine.user_files)
    app = create_app(settings, engine, Metrics())
    # a client that goes away cancels its handler, and so its query (handler_cancellation)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                           auto_decompress=False)  # bodies are decoded by wire.decode_body
    try:
        await runner.setup()
        await web.TCPSite(runner, settings.warehouse_host, settings.warehouse_port).start()
        log.info("warehouse: ClickHouse HTTP interface on http://%s:%d/ (data %s)",
                 settings.warehouse_host, settings.warehouse_port, engine.path)
        await stop.wait()
    finally:
        await runner.cleanup()
        engine.close()
