"""Open alerts (idle GPUs, health)."""

from __future__ import annotations

from aiohttp import web

from services.api import core
from services.api.handling import STATE, Route, json
from services.api.schemas import AlertList


async def open_alerts(request: web.Request) -> web.Response:
    return json(core.alerts(request.app[STATE]))


ROUTES = [
    Route("GET", "/api/v1/alerts", open_alerts, "Open (firing) alerts, newest first",
          response=AlertList, tag="alerts"),
]
