"""Waste: a tenant's GPU-hours allocated against busy and what was reclaimed (warehouse), the
jobs' right-sizing (live), and the measured usage a job's detail carries."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
from aiohttp import web

from services.api import core, waste
from services.api.handlers.history import to_query
from services.api.handling import SETTINGS, STATE, WAREHOUSE, Route, error, json, read_query
from services.api.schemas import HistoryParams, JobDetail
from services.api.state import JobRecord
from services.api.wasteschemas import (
    RightSizingList,
    RightSizingQuery,
    RightSizingView,
    TenantPath,
    TenantWaste,
    WasteParams,
)

log = logging.getLogger(__name__)
USAGE_CACHE = web.AppKey("usage_cache", waste.TtlCache)  # a job's usage, kept 30 s
USAGE_TIMEOUT_S = 5.0  # a job's detail waits this long for its usage, then answers without
DEFAULT_SPAN_S = 24 * 3600
JOB_LOOKBACK_S = 31 * 24 * 3600  # a job whose start the api does not know: its last month


def tenant_of(request: web.Request) -> str:
    """The path's tenant, checked (400 naming ``tenant``)."""
    try:
        return msgspec.convert({"tenant": request.match_info["tenant"]}, TenantPath).tenant
    except msgspec.ValidationError as e:
        raise error(400, f"bad tenant name: {e}", "tenant") from None


def job_span(record: JobRecord, now: float) -> tuple[int, int]:
    """The time the warehouse holds a job's windows in: from its first known moment (a little
    before: a window starts before the sample that placed it there) to now."""
    known = [t for t in (record.submitted, *(p.ts for p in record.placements),
                         *(e.ts for e in record.events)) if t]
    start = min(known) - 120 if known else now - JOB_LOOKBACK_S
    return max(0, int(start)), int(now) + 60


async def job_detail(request: web.Request, record: JobRecord) -> JobDetail:
    """The job's live detail, with its measured usage and right-sizing. The warehouse is asked
    for what the live state lacks; when it does not answer in time, the detail says why."""
    state, settings = request.app[STATE], request.app[SETTINGS]
    rightsizing = state.loop.rightsizing_of(record.job_id)
    detail = core.job_detail(record, rightsizing, state.loop.reclaims_of(record.job_id))
    start, end = job_span(record, time.time())
    params = {"cluster": settings.cluster, "job_id": record.job_id, "start": start, "end": end,
              "idle_pct": settings.api_idle_util_pct}
    house, cache = request.app[WAREHOUSE], request.app[USAGE_CACHE]
    cached = cache.get(record.job_id)
    if cached is None:
        try:
            async with asyncio.timeout(USAGE_TIMEOUT_S):
                usage = waste.usage_of(await house.query(waste.USAGE_SQL, params))
                rows = [] if rightsizing is not None else await house.query(
                    waste.JOB_RIGHTSIZING_SQL, {"job_id": record.job_id})
            cached = (usage, waste.rightsizing_of(rows[0]) if rows else None)
        except Exception as e:  # the warehouse is down or slow: the live part still answers
            log.warning("usage of job %s: the warehouse did not answer: %s", record.job_id, e)
            # kept too: a page that polls a job asks a failing warehouse once per TTL, so
            # queries that outlive their timeout do not pile up in the thread pool
            cached = f"the warehouse did not answer: {type(e).__name__}"
        cache.put(record.job_id, cached)
    if isinstance(cached, str):
        detail.usage_note = cached
        return detail
    detail.usage = cached[0]
    detail.rightsizing = rightsizing or cached[1]
    if detail.usage is None:
        detail.usage_note = "no measured windows of this job in the warehouse yet"
    return detail


async def tenant_waste(request: web.Request) -> web.Response:
    tenant = tenant_of(request)
    p = read_query(request, WasteParams)
    settings = request.app[SETTINGS]
    q = to_query(HistoryParams(from_=p.from_, to=p.to, step=p.step, group_by="tenant",
                               tenant=tenant),
                 settings.cluster, settings.api_idle_util_pct, time.time(),
                 default_span_s=DEFAULT_SPAN_S)
    bounds: dict[str, Any] = {"tenant": tenant, "start": q.start, "end": q.end}
    house = request.app[WAREHOUSE]
    try:  # the five answers do not depend on each other: asked at once
        points, totals_rows, reclaims, give_back_rows, jobs = await asyncio.gather(
            house.history(q), house.query(waste.RECLAIM_TOTALS_SQL, bounds),
            house.query(waste.RECLAIMS_SQL, bounds), house.query(waste.GIVE_BACK_SQL, bounds),
            house.query(waste.TENANT_RIGHTSIZING_SQL, bounds))
        series, reclaim_totals = waste.series_of(points), totals_rows[0]
        give_back = give_back_rows[0][0]
    except Exception as e:  # the warehouse is down or refused: say so, do not fail
        log.warning("waste query failed: %s", e)
        raise error(503, f"the warehouse did not answer: {type(e).__name__}") from None
    return json(TenantWaste(
        tenant=tenant, start=q.start, end=q.end, step=q.step,
        totals=waste.totals_of(series, reclaim_totals, give_back), series=series,
        reclaims=[waste.reclaimed_of(r) for r in reclaims],
        jobs=[waste.rightsizing_of(r) for r in jobs]))


async def rightsizing(request: web.Request) -> web.Response:
    q = read_query(request, RightSizingQuery)
    views: list[RightSizingView]
    views, total = request.app[STATE].loop.rightsizing_list(q.tenant, q.final, q.limit)
    return json(RightSizingList(jobs=views, total=total))


ROUTES = [
    Route("GET", "/api/v1/tenants/{tenant}/waste", tenant_waste,
          "A tenant's waste from the warehouse: GPU-hours allocated against busy per step, "
          "energy, idle jobs warned and reclaimed (and the idle GPU-hours reclaimed), and the "
          "jobs that asked for the most GPUs they did not use",
          query=WasteParams, path_params=TenantPath, response=TenantWaste,
          errors=(400, 401, 403, 503), tag="waste"),
    Route("GET", "/api/v1/rightsizing", rightsizing,
          "Jobs' latest right-sizing reports (requested against used, with a recommendation), "
          "the most idle GPU-hours first",
          query=RightSizingQuery, response=RightSizingList, tag="waste"),
]
