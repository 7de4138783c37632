"""Utilization history from the warehouse."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from services.api import core
from services.api.handling import SETTINGS, STATE, WAREHOUSE, Route, error, json, read_query
from services.api.history import HistoryQuery
from services.api.schemas import History, HistoryParams
from services.api.timerange import MAX_HISTORY_STEPS

log = logging.getLogger(__name__)


def to_query(p: HistoryParams, cluster: str, idle_pct: float, now: float,
             default_span_s: int = 3600) -> HistoryQuery:
    """Checked bounds: ``from`` before ``to``, and not more than MAX_HISTORY_STEPS steps
    between (the document says both, in the parameters' descriptions). Without ``from``, the
    range is the ``default_span_s`` before ``to``."""
    end = p.to if p.to is not None else int(now)
    start = p.from_ if p.from_ is not None else max(0, end - default_span_s)
    if start >= end:
        raise error(400, "`from` must be before `to`", "from")
    if p.step % 3600 == 0:  # whole-hour steps: whole hours, so the hourly rollup answers
        start, end = start - start % 3600, end + (-end) % 3600
    if (end - start) // p.step > MAX_HISTORY_STEPS:
        raise error(400, f"at most {MAX_HISTORY_STEPS} steps between `from` and `to`", "step")
    return HistoryQuery(start=start, end=end, step=p.step, group_by=p.group_by,
                        cluster=cluster, idle_pct=idle_pct, node=p.node, job_id=p.job_id,
                        tenant=p.tenant)


async def history(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    params = read_query(request, HistoryParams)
    q = to_query(params, settings.cluster, settings.api_idle_util_pct, time.time())
    models = {f"{n.node}/{g.index}": g.model for n in core.node_list(request.app[STATE])
              for g in n.gpus} if q.group_by == "model" else None
    try:
        points = await request.app[WAREHOUSE].history(q, models)
    except Exception as e:  # the warehouse is down or refused: say so, do not fail
        log.warning("history query failed: %s", e)
        raise error(503, f"the warehouse did not answer: {type(e).__name__}") from None
    return json(History(group_by=q.group_by, step=q.step, points=points))


ROUTES = [
    Route("GET", "/api/v1/history/utilization", history,
          "Utilization history from the warehouse, per step and group",
          query=HistoryParams, response=History, errors=(400, 401, 403, 503), tag="history"),
]
