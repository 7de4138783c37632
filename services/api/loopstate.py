"""The closed loop's decisions as the api keeps them: GPUs drained now, each job's latest
right-sizing report and its recent reclaim messages. Pure: messages in, views out; bounded.

``LiveState`` hands these messages here; ``apply`` returns the event the stream forwards
(``reclaim`` or ``drain``), or None.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from gpufleet.contracts import (
    GpuDrain,
    GpuUndrain,
    ReclaimRequest,
    ReclaimWarning,
    ReclaimWithdrawn,
    RightSizingReport,
)
from services.api.wasteschemas import DrainView, ReclaimView, RightSizingView

RECLAIMS_PER_JOB = 20
LoopMessage = (ReclaimWarning | ReclaimWithdrawn | ReclaimRequest | GpuDrain | GpuUndrain
               | RightSizingReport)
Note = tuple[str, ReclaimView | DrainView]


def reclaim_view(m: ReclaimWarning | ReclaimWithdrawn | ReclaimRequest) -> ReclaimView:
    if isinstance(m, ReclaimWithdrawn):
        return ReclaimView(kind="withdraw", job_id=m.job_id, ts=m.ts, policy=m.policy,
                           idle_since=m.idle_since, reason=m.reason)
    gpus = [f"{g.node}/{g.gpu}" for g in m.gpus]
    if isinstance(m, ReclaimWarning):
        return ReclaimView(kind="warn", job_id=m.job_id, ts=m.ts, policy=m.policy,
                           tenant=m.tenant, reclaim_at=m.reclaim_at, idle_since=m.idle_since,
                           gpus=gpus, util_mean=m.util_mean, reason=m.reason)
    return ReclaimView(kind="reclaim", job_id=m.job_id, ts=m.ts, policy=m.policy,
                       tenant=m.tenant, action=m.action, idle_since=m.idle_since, gpus=gpus,
                       util_mean=m.util_mean, reason=m.reason)


def drain_view(m: GpuDrain | GpuUndrain) -> DrainView:
    if isinstance(m, GpuDrain):
        return DrainView(kind="drain", cluster=m.cluster, node=m.node, gpu=m.gpu, ts=m.ts,
                         cause=str(m.cause), reason=m.reason, jobs=list(m.jobs), since=m.since)
    return DrainView(kind="undrain", cluster=m.cluster, node=m.node, gpu=m.gpu, ts=m.ts,
                     reason=m.reason, since=m.drained_since)


def rightsizing_view(r: RightSizingReport) -> RightSizingView:
    return RightSizingView(
        job_id=r.job_id, tenant=r.tenant, final=r.final, gpus_requested=r.gpus_requested,
        gpus_busy=r.gpus_busy, recommended_gpus=r.recommended_gpus,
        gpu_hours=round(r.gpu_minutes / 60, 4),
        idle_gpu_hours=round(max(0.0, r.gpu_minutes - r.busy_gpu_minutes) / 60, 4),
        util_mean=round(r.util_mean, 2), util_p95=round(r.util_p95, 2),
        util_max=round(r.util_max, 2), mem_peak_bytes=r.mem_peak_bytes,
        recommendation=r.recommendation, ts=r.ts)


def _bound(kept: OrderedDict[str, Any], limit: int) -> None:
    while len(kept) > limit:
        kept.popitem(last=False)


@dataclass
class LoopState:
    max_jobs: int = 20_000
    drained: dict[tuple[str, int], GpuDrain] = field(default_factory=dict)  # (node, gpu)
    rightsizing: OrderedDict[str, RightSizingReport] = field(default_factory=OrderedDict)
    reclaims: OrderedDict[str, deque[ReclaimView]] = field(default_factory=OrderedDict)

    def apply(self, msg: LoopMessage) -> Note | None:
        match msg:
            case GpuDrain():
                current = self.drained.get((msg.node, msg.gpu))
                if current is not None and current.ts > msg.ts:
                    return None  # an older drain read late
                self.drained[(msg.node, msg.gpu)] = msg
                return "drain", drain_view(msg)
            case GpuUndrain():
                current = self.drained.get((msg.node, msg.gpu))
                if current is not None and current.since <= msg.drained_since:
                    del self.drained[(msg.node, msg.gpu)]
                return "drain", drain_view(msg)
            case RightSizingReport():
                self._rightsizing(msg)
                return None
            case _:
                view = reclaim_view(msg)
                kept = self.reclaims.pop(msg.job_id, None) or deque(maxlen=RECLAIMS_PER_JOB)
                if not any(v.ts == view.ts and v.kind == view.kind for v in kept):
                    kept.append(view)  # a replay of the same message is kept once
                self.reclaims[msg.job_id] = kept
                _bound(self.reclaims, self.max_jobs)
                return "reclaim", view

    def _rightsizing(self, r: RightSizingReport) -> None:
        current = self.rightsizing.get(r.job_id)
        if current is not None and ((current.final and not r.final) or current.ts > r.ts):
            return  # a final report stands; an older one read late does not replace a newer
        self.rightsizing.pop(r.job_id, None)
        self.rightsizing[r.job_id] = r
        _bound(self.rightsizing, self.max_jobs)

    def drain_of(self, node: str, gpu: int) -> GpuDrain | None:
        return self.drained.get((node, gpu))

    def rightsizing_of(self, job_id: str) -> RightSizingView | None:
        report = self.rightsizing.get(job_id)
        return rightsizing_view(report) if report is not None else None

    def reclaims_of(self, job_id: str) -> list[ReclaimView]:
        return list(self.reclaims.get(job_id, ()))

    def rightsizing_list(self, tenant: str | None, final: bool | None,
                         limit: int) -> tuple[list[RightSizingView], int]:
        """Reports, the most idle GPU-hours first; one page and how many matched."""
        chosen = [rightsizing_view(r) for r in self.rightsizing.values()
                  if (tenant is None or r.tenant == tenant)
                  and (final is None or r.final == final)]
        chosen.sort(key=lambda v: (-v.idle_gpu_hours, v.job_id))
        return chosen[:limit], len(chosen)
