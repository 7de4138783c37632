"""The api application: routes, middlewares, the live feed and the bus producer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from gpufleet.bus import DeadLetters, make_producer
from gpufleet.ops import Metrics, ReadyCheck, add_ops_routes
from services.api import openapi
from services.api.auth import Authenticator, parse_tokens
from services.api.config import ApiSettings
from services.api.handlers import alerts, cluster, history, jobs, stream, tenants, waste
from services.api.handling import (
    AUTH,
    DIED,
    LIVE_READY,
    METRICS,
    PRODUCER,
    QUOTAS,
    SETTINGS,
    STATE,
    STOPPING,
    VIEWS,
    WAREHOUSE,
    Route,
    ViewCache,
    errors_and_metrics,
    make_auth_middleware,
)
from services.api.history import Warehouse
from services.api.live import feed, make_reader
from services.api.state import LiveState
from services.api.waste import TtlCache

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
API_ROUTES: list[Route] = [
    *cluster.ROUTES, *jobs.ROUTES, *tenants.ROUTES, *history.ROUTES, *alerts.ROUTES,
    *stream.ROUTES, *waste.ROUTES,
]
ALL_ROUTES: list[Route] = [*API_ROUTES, openapi.route(API_ROUTES)]


async def _bus(app: web.Application) -> AsyncIterator[None]:
    """The producer for job requests and the live feed; the feed is cancelled, then awaited."""
    settings, metrics = app[SETTINGS], app[METRICS]
    producer = make_producer(settings)
    await producer.start()
    app[PRODUCER] = producer
    reader = make_reader(settings)
    await reader.start()
    letters = DeadLetters(producer, settings, consumer="api")
    task = asyncio.create_task(
        feed(app[STATE], settings, reader, letters, metrics, app[LIVE_READY]), name="api-feed")
    task.add_done_callback(lambda t: _feed_ended(app, t))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait([task])  # an error it ended with was logged by _feed_ended
        await reader.stop()
        await producer.stop()
        await app[WAREHOUSE].reset()


def _feed_ended(app: web.Application, task: asyncio.Task[None]) -> None:
    """A feed that ended leaves the state frozen: stop being ready, and stop the process
    (``gpufleet api`` waits on ``DIED``) so that its supervisor starts a fresh one."""
    if task.cancelled():
        return
    app[LIVE_READY].clear()
    app[DIED].set()
    log.error("the live feed stopped; the api stops", exc_info=task.exception())


async def _on_shutdown(app: web.Application) -> None:
    app[STOPPING].set()  # ends the event streams


def _ready_check(app: web.Application) -> ReadyCheck:
    async def check() -> dict[str, bool]:
        kafka = False
        if PRODUCER in app:
            with contextlib.suppress(Exception):
                kafka = bool(await asyncio.wait_for(
                    app[PRODUCER].client.force_metadata_update(), 3))
        warehouse = await app[WAREHOUSE].ping()
        return {"kafka": kafka, "live_feed": app[LIVE_READY].is_set(), "warehouse": warehouse}

    return check


async def _index(_: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def create_app(settings: ApiSettings, state: LiveState | None = None,
               metrics: Metrics | None = None) -> web.Application:
    """The api as an aiohttp application; the caller runs it (``web.run_app`` or a runner)."""
    by_key = {(r.method, r.path): r for r in ALL_ROUTES}
    app = web.Application(
        client_max_size=settings.api_max_body_bytes,
        middlewares=[errors_and_metrics, make_auth_middleware(by_key)],
    )
    app[SETTINGS] = settings
    app[STATE] = state or LiveState(idle_util_pct=settings.api_idle_util_pct,
                                    max_jobs=settings.api_max_jobs,
                                    job_lease_s=settings.api_job_lease_s)
    app[AUTH] = Authenticator(parse_tokens(settings.api_tokens), settings.api_open_reads)
    app[METRICS] = metrics or Metrics()
    app[QUOTAS] = settings.quotas()
    app[WAREHOUSE] = Warehouse(settings.clickhouse_url)
    app[LIVE_READY] = asyncio.Event()
    app[STOPPING] = asyncio.Event()
    app[DIED] = asyncio.Event()
    app[VIEWS] = ViewCache()
    app[waste.USAGE_CACHE] = TtlCache()
    for r in ALL_ROUTES:
        app.router.add_route(r.method, r.path, r.handler)
    app.router.add_get("/", _index)
    app.router.add_static("/static/", STATIC, append_version=True)
    add_ops_routes(app, app[METRICS], _ready_check(app))
    app.cleanup_ctx.append(_bus)
    app.on_shutdown.append(_on_shutdown)
    return app
