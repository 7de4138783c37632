"""The endpoint's aiohttp application (its start and stop are ``serve`` in ``__main__``)."""

from __future__ import annotations

import functools

from aiohttp import web

from gpufleet.ops import Metrics, add_ops_routes
from services.warehouse.auth import users_from
from services.warehouse.config import WarehouseSettings
from services.warehouse.engine import Engine
from services.warehouse.handler import Context, Limits, handle
from services.warehouse.sessions import Sessions

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
