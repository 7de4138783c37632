"""Queues and tenants: usage against quota and fair share."""

from __future__ import annotations

from aiohttp import web

from services.api import core
from services.api.handling import QUOTAS, STATE, Route, json
from services.api.schemas import QueueList, TenantList


async def tenants(request: web.Request) -> web.Response:
    return json(core.tenants(request.app[STATE], request.app[QUOTAS]))


async def queues(request: web.Request) -> web.Response:
    return json(core.queues(request.app[STATE]))


ROUTES = [
    Route("GET", "/api/v1/tenants", tenants, "Per-tenant GPU usage against quota and fair share",
          response=TenantList, tag="queues"),
    Route("GET", "/api/v1/queues", queues, "Queues: waiting jobs and GPUs, oldest wait",
          response=QueueList, tag="queues"),
]
