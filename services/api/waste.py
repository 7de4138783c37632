"""The warehouse's answers about waste: a job's measured usage per GPU, its right-sizing, and a
tenant's GPU-hours allocated against busy, what was reclaimed and what to give back.

Fixed SQL with server-side parameters, like ``history.py``; rows folded into response Structs
by pure functions, so the arithmetic is tested without a warehouse.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from services.api.schemas import HistoryPoint
from services.api.wasteschemas import (
    MAX_JOBS_LISTED,
    MAX_RECLAIMS_LISTED,
    GpuUsage,
    JobUsage,
    ReclaimedJob,
    RightSizingView,
    WastePoint,
    WasteTotals,
)

MAX_GPUS_LISTED = 4096
MJ_PER_KWH = 3.6e9

# Per GPU a job ran on: window-weighted mean, max, the peak of the per-minute memory means.
USAGE_SQL = f"""
SELECT node, gpu,
    sum(window_s) AS gpu_seconds,
    sum(util_mean * window_s) AS util_seconds,
    max(util_max) AS util_max,
    max(mem_used_bytes_mean) AS mem_peak,
    sum(energy_mj) AS energy_mj,
    sumIf(window_s, util_mean >= {{idle_pct:Float64}}) AS busy_seconds
FROM gpu_util_1m
WHERE cluster = {{cluster:String}} AND job_id = {{job_id:String}}
  AND window_start >= toDateTime({{start:UInt32}}) AND window_start < toDateTime({{end:UInt32}})
GROUP BY node, gpu
ORDER BY node, gpu
LIMIT {MAX_GPUS_LISTED}
"""

RIGHTSIZING_COLUMNS = """job_id, tenant, final, gpus_requested, gpus_busy, recommended_gpus,
    gpu_hours, idle_gpu_hours, util_mean, util_p95, util_max, mem_peak_bytes, recommendation,
    toUnixTimestamp64Milli(reported_at) / 1000 AS ts"""

JOB_RIGHTSIZING_SQL = f"""
SELECT {RIGHTSIZING_COLUMNS}
FROM v_job_rightsizing
WHERE job_id = {{job_id:String}}
ORDER BY reported_at DESC
LIMIT 1
"""

TENANT_RIGHTSIZING_SQL = f"""
SELECT {RIGHTSIZING_COLUMNS}
FROM v_job_rightsizing
WHERE tenant = {{tenant:String}}
  AND reported_at >= toDateTime({{start:UInt32}}) AND reported_at < toDateTime({{end:UInt32}})
ORDER BY idle_gpu_hours DESC, job_id
LIMIT {MAX_JOBS_LISTED}
"""

GIVE_BACK_SQL = """
SELECT toInt64(sum(greatest(gpus_to_give_back, 0)))
FROM v_job_rightsizing
WHERE tenant = {tenant:String}
  AND reported_at >= toDateTime({start:UInt32}) AND reported_at < toDateTime({end:UInt32})
"""

RECLAIMS_WHERE = """
WHERE tenant = {tenant:String}
  AND warned_at >= toDateTime({start:UInt32}) AND warned_at < toDateTime({end:UInt32})"""

RECLAIMS_SQL = f"""
SELECT job_id, policy,
    toUnixTimestamp64Milli(idle_since) / 1000,
    toUnixTimestamp64Milli(warned_at) / 1000,
    toUnixTimestamp64Milli(reclaimed_at) / 1000,
    toUnixTimestamp64Milli(withdrawn_at) / 1000,
    action, gpu_count, idle_gpu_hours_before_reclaim, reason
FROM v_reclaims{RECLAIMS_WHERE}
ORDER BY warned_at DESC, job_id
LIMIT {MAX_RECLAIMS_LISTED}
"""

RECLAIM_TOTALS_SQL = f"""
SELECT count(), countIf(reclaimed), sumIf(idle_gpu_hours_before_reclaim, reclaimed)
FROM v_reclaims{RECLAIMS_WHERE}
"""


def usage_of(rows: Sequence[Sequence[Any]]) -> JobUsage | None:
    """Rows of ``USAGE_SQL`` as the job's usage; None when the warehouse has no window of it."""
    gpus: list[GpuUsage] = []
    seconds = util_seconds = busy = energy = 0.0
    for node, gpu, gpu_s, util_s, util_max, mem_peak, energy_mj, busy_s in rows:
        gpus.append(GpuUsage(
            node=str(node), gpu=int(gpu), gpu_hours=round(gpu_s / 3600, 6),
            util_mean=round(util_s / gpu_s, 2) if gpu_s else 0.0, util_max=round(util_max, 2),
            mem_peak_bytes=int(mem_peak), energy_kwh=round(energy_mj / MJ_PER_KWH, 6)))
        seconds += gpu_s
        util_seconds += util_s
        busy += busy_s
        energy += energy_mj
    if not gpus:
        return None
    return JobUsage(gpus=gpus, gpu_hours=round(seconds / 3600, 6),
                    busy_gpu_hours=round(busy / 3600, 6),
                    util_mean=round(util_seconds / seconds, 2) if seconds else None,
                    mem_peak_bytes=max(g.mem_peak_bytes for g in gpus),
                    energy_kwh=round(energy / MJ_PER_KWH, 6))


def rightsizing_of(row: Sequence[Any]) -> RightSizingView:
    (job_id, tenant, final, requested, busy, recommended, gpu_hours, idle_hours, util_mean,
     util_p95, util_max, mem_peak, recommendation, ts) = row
    return RightSizingView(
        job_id=job_id, tenant=tenant, final=bool(final), gpus_requested=int(requested),
        gpus_busy=int(busy), recommended_gpus=int(recommended), gpu_hours=round(gpu_hours, 4),
        idle_gpu_hours=round(max(0.0, idle_hours), 4), util_mean=round(util_mean, 2),
        util_p95=round(util_p95, 2), util_max=round(util_max, 2), mem_peak_bytes=int(mem_peak),
        recommendation=recommendation, ts=float(ts), source="warehouse")


def reclaimed_of(row: Sequence[Any]) -> ReclaimedJob:
    (job_id, policy, idle_since, warned, reclaimed, withdrawn, action, gpus, idle_hours,
     reason) = row
    return ReclaimedJob(job_id=job_id, policy=policy, idle_since=float(idle_since),
                        warned_at=_ts(warned), reclaimed_at=_ts(reclaimed),
                        withdrawn_at=_ts(withdrawn), action=action, gpus=int(gpus),
                        idle_gpu_hours_reclaimed=round(float(idle_hours), 4), reason=reason)


def _ts(value: Any) -> float | None:
    return None if value is None else float(value)


def series_of(points: list[HistoryPoint]) -> list[WastePoint]:
    """A tenant's history points (grouped by tenant, filtered to it) as allocated against busy:
    every window of the tenant had one of its jobs on the GPU."""
    return [WastePoint(ts=p.ts, allocated_gpu_hours=p.gpu_hours,
                       busy_gpu_hours=round(max(0.0, p.gpu_hours - p.idle_allocated_gpu_hours), 6),
                       idle_gpu_hours=p.idle_allocated_gpu_hours, util_mean=p.util_mean,
                       energy_kwh=p.energy_kwh)
            for p in points]


def totals_of(series: list[WastePoint], reclaim_row: Sequence[Any],
              give_back: int) -> WasteTotals:
    allocated = sum(p.allocated_gpu_hours for p in series)
    busy = sum(p.busy_gpu_hours for p in series)
    warned, reclaimed, reclaimed_hours = reclaim_row
    return WasteTotals(
        allocated_gpu_hours=round(allocated, 4), busy_gpu_hours=round(busy, 4),
        idle_gpu_hours=round(sum(p.idle_gpu_hours for p in series), 4),
        busy_share=round(busy / allocated, 4) if allocated else None,
        energy_kwh=round(sum(p.energy_kwh for p in series), 4), warned_jobs=int(warned),
        reclaimed_jobs=int(reclaimed),
        idle_gpu_hours_reclaimed=round(float(reclaimed_hours or 0), 4),
        gpus_to_give_back=int(give_back or 0))


class TtlCache:
    """Answers of the warehouse kept ``ttl_s`` (its windows are a minute long: a job page that
    polls every few seconds asks it once), at most ``size`` of them, the oldest dropped first."""

    def __init__(self, ttl_s: float = 30.0, size: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl, self._size, self._clock = ttl_s, size, clock
        self._kept: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str) -> Any | None:
        hit = self._kept.get(key)
        if hit is None or self._clock() - hit[0] >= self._ttl:
            return None
        return hit[1]

    def put(self, key: str, value: Any) -> None:
        self._kept.pop(key, None)
        self._kept[key] = (self._clock(), value)
        while len(self._kept) > self._size:
            self._kept.popitem(last=False)
