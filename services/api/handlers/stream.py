"""Live updates as server-sent events: ``fleet`` (the whole picture, when it changed), ``job``
and ``alert`` (each change), ``reclaim`` (an idle job warned, withdrawn or reclaimed) and
``drain`` (a GPU drained for its health, or returned)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from aiohttp import web

from services.api import core
from services.api.handling import (
    QUOTAS,
    SETTINGS,
    STATE,
    STOPPING,
    VIEWS,
    Route,
    read_query,
)
from services.api.schemas import AlertChanged, FleetEvent, JobView, StreamParams
from services.api.state import LiveState
from services.api.wasteschemas import DrainView, ReclaimView

_encoder = msgspec.json.Encoder()
LIST_LIMIT = 200


def fleet(state: LiveState, cluster: str, quotas: dict[str, float]) -> FleetEvent:
    """Everything the dashboard shows, in one event."""
    return FleetEvent(
        summary=core.cluster_summary(state, cluster),
        nodes=core.node_list(state),
        queued=core.list_jobs(state, states={"queued", "submitted"}, limit=LIST_LIMIT).jobs,
        running=core.list_jobs(state, states={"placed", "started", "heartbeat", "preempting"},
                               limit=LIST_LIMIT).jobs,
        alerts=core.alerts(state).alerts,
        tenants=core.tenants(state, quotas).tenants,
    )


def event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encoder.encode(data) + b"\n\n"


async def stream(request: web.Request) -> web.StreamResponse:
    params = read_query(request, StreamParams)
    settings, state = request.app[SETTINGS], request.app[STATE]
    interval = params.interval or settings.api_stream_interval_s
    stopping = request.app[STOPPING]
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no"})
    await response.prepare(request)
    version, seq = -1, state.seq
    with contextlib.suppress(ConnectionResetError):
        while not stopping.is_set():
            chunks = []
            if state.version != version:
                version = state.version
                chunks.append(request.app[VIEWS].get("fleet-event", version, lambda: event(
                    "fleet", fleet(state, settings.cluster, request.app[QUOTAS]))))
            for n, kind, key in state.changes_since(seq):
                seq = n
                if kind == "job" and key in state.jobs:
                    chunks.append(event("job", core.job_view(state.jobs[key])))
                elif kind == "alert":
                    chunks.append(event("alert", AlertChanged(alert_id=key)))
                elif kind in ("reclaim", "drain"):
                    chunks.append(event(kind, key))
            await response.write(b"".join(chunks) or b": keep-alive\n\n")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
    return response


ROUTES = [
    Route("GET", "/api/v1/stream", stream,
          "Server-sent events: `fleet` (summary, nodes, queue, running jobs, alerts, tenants) "
          "when anything changed, `job` and `alert` for each change, `reclaim` (an idle job "
          "warned, withdrawn or reclaimed) and `drain` (a GPU drained or returned)",
          query=StreamParams, response=None, content_type="text/event-stream", tag="stream",
          events=(("fleet", FleetEvent), ("job", JobView), ("alert", AlertChanged),
                  ("reclaim", ReclaimView), ("drain", DrainView))),
]
