"""Utilization history from the warehouse (table ``gpu_util_1m``), over ClickHouse HTTP.

The SQL is fixed text with server-side parameters (``{name:Type}``); what the caller chooses
(``group_by``) picks one of a few fixed expressions, never text from the request.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from msgspec import Struct

from gpufleet import clickhouse
from services.api.schemas import HistoryPoint

GroupBy = Literal["gpu", "node", "model", "job", "tenant", "cluster"]

# The key of each grouping. "model" is grouped by GPU in SQL and folded by model here, with the
# models the api knows from the node inventory (the rollup table has no model column).
KEY_SQL: dict[str, str] = {
    "gpu": "concat(node, '/', toString(gpu))",
    "model": "concat(node, '/', toString(gpu))",
    "node": "node",
    "job": "ifNull(job_id, '')",
    "tenant": "ifNull(tenant, '')",
    "cluster": "cluster",
}

# Per-minute rows; the mean utilization is weighted by window length (the warehouse's own
# definition: util_seconds / gpu_seconds).
QUERY_1M = """
SELECT
    toUnixTimestamp(toStartOfInterval(window_start, toIntervalSecond({{step:UInt32}}))) AS t,
    {key} AS k,
    sum(util_mean * window_s) AS util_seconds,
    sum(window_s) AS gpu_seconds,
    max(util_max) AS util_max,
    sumIf(window_s, util_mean < {{idle_pct:Float64}} AND ifNull(job_id, '') != '') AS idle_s,
    sum(energy_mj) AS energy_mj,
    uniqExact(node, gpu) AS gpus
FROM gpu_util_1m
WHERE window_start >= toDateTime({{start:UInt32}}) AND window_start < toDateTime({{end:UInt32}})
  AND cluster = {{cluster:String}}{filters}
GROUP BY t, k
ORDER BY t, k
"""

# The hourly rollup (filled by the warehouse from every insert into gpu_util_1m), 60 times
# fewer rows: used when the step is whole hours and idleness means under 5 %, as it does there.
QUERY_1H = """
SELECT
    toUnixTimestamp(toStartOfInterval(hour, toIntervalSecond({{step:UInt32}}))) AS t,
    {key} AS k,
    sum(util_seconds) AS util_seconds,
    sum(gpu_seconds) AS gpu_seconds,
    max(util_max) AS util_max,
    sum(idle_allocated_seconds) AS idle_s,
    sum(energy_mj) AS energy_mj,
    uniqExact(node, gpu) AS gpus
FROM gpu_util_1h
WHERE hour >= toDateTime({{start:UInt32}}) AND hour < toDateTime({{end:UInt32}})
  AND cluster = {{cluster:String}}{filters}
GROUP BY t, k
ORDER BY t, k
"""
ROLLUP_IDLE_PCT = 5.0
FILTERS = {  # parameter -> the condition it adds when given
    "node": "node = {node:String}",
    "job_id": "ifNull(job_id, '') = {job_id:String}",
    "tenant": "ifNull(tenant, '') = {tenant:String}",
}


class HistoryQuery(Struct, frozen=True, kw_only=True):
    start: int
    end: int
    step: int
    group_by: GroupBy
    cluster: str
    idle_pct: float = 5.0
    node: str | None = None
    job_id: str | None = None
    tenant: str | None = None


def hourly(q: HistoryQuery) -> bool:
    """Whether the hourly rollup answers ``q`` exactly."""
    return (q.step % 3600 == 0 and q.start % 3600 == 0 and q.end % 3600 == 0
            and q.idle_pct == ROLLUP_IDLE_PCT)


def build(q: HistoryQuery) -> tuple[str, dict[str, Any]]:
    """The SQL text and its parameters."""
    chosen = {name: getattr(q, name) for name in FILTERS if getattr(q, name) is not None}
    filters = "".join(f"\n  AND {FILTERS[name]}" for name in chosen)
    sql = (QUERY_1H if hourly(q) else QUERY_1M).format(key=KEY_SQL[q.group_by], filters=filters)
    params: dict[str, Any] = {"step": q.step, "start": q.start, "end": q.end,
                              "cluster": q.cluster, **chosen}
    if not hourly(q):
        params["idle_pct"] = q.idle_pct
    return sql, params


class Row(Struct, array_like=True):
    t: float
    k: str
    util_seconds: float
    gpu_seconds: float
    util_max: float
    idle_s: float
    energy_mj: float
    gpus: int


def fold(rows: Sequence[Sequence[Any]], group_by: str,
         models: Mapping[str, str] | None = None) -> list[HistoryPoint]:
    """Rows of ``QUERY`` as points; for ``model``, GPUs are merged into their model."""
    merged: dict[tuple[float, str], list[float]] = defaultdict(lambda: [0.0] * 6)
    for raw in rows:
        r = Row(*raw)
        key = (models or {}).get(r.k, "unknown") if group_by == "model" else r.k
        acc = merged[(float(r.t), key)]
        acc[0] += r.util_seconds
        acc[1] += r.gpu_seconds
        acc[2] = max(acc[2], r.util_max)
        acc[3] += r.idle_s
        acc[4] += r.energy_mj
        acc[5] += r.gpus
    return [
        HistoryPoint(ts=t, key=k, util_mean=round(a[0] / a[1], 3) if a[1] else 0.0,
                     util_max=round(a[2], 3), gpu_hours=round(a[1] / 3600, 6),
                     idle_allocated_gpu_hours=round(a[3] / 3600, 6),
                     energy_kwh=round(a[4] / 3.6e9, 6), gpus=int(a[5]))
        for (t, k), a in sorted(merged.items())
    ]


class Warehouse:
    """A lazily made warehouse client (``gpufleet.clickhouse``); remade after a failure."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _get(self) -> Any:
        async with self._lock:
            if self._client is None:
                self._client = await asyncio.to_thread(
                    clickhouse.client, self._url, connect_timeout_s=3, send_receive_timeout_s=30)
            return self._client

    async def query(self, sql: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        client = await self._get()
        try:
            result = await asyncio.to_thread(client.query, sql, parameters=params)
        except Exception:
            await self.reset()
            raise
        return list(result.result_rows)

    async def ping(self) -> bool:
        try:
            client = await self._get()
            return bool(await asyncio.to_thread(client.ping))
        except Exception:
            await self.reset()
            return False

    async def reset(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    async def history(self, q: HistoryQuery,
                      models: Mapping[str, str] | None = None) -> list[HistoryPoint]:
        sql, params = build(q)
        return fold(await self.query(sql, params), q.group_by, models)
