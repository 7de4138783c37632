"""Warehouse rows of the closed loop's messages (migration 0005): reclaims, GPU drains and
right-sizing reports, one row per message, in the shape ``rows.to_columns`` and the sink take.

The writer consumes ``reclaims``, ``gpu.drains`` and ``jobs.rightsizing`` (one source class each
in ``sources``) and inserts these rows into ``reclaims``, ``gpu_drains`` and ``job_rightsizing``
(``LOOP_TABLES``).
"""

from __future__ import annotations

from typing import Any

from gpufleet.contracts import (
    GpuDrain,
    GpuUndrain,
    Message,
    ReclaimRequest,
    ReclaimWarning,
    ReclaimWithdrawn,
    RightSizingReport,
)

LOOP_TABLES = {"reclaims": "reclaims", "gpu.drains": "gpu_drains",
               "jobs.rightsizing": "job_rightsizing"}  # topic -> table


def reclaim_row(m: ReclaimWarning | ReclaimWithdrawn | ReclaimRequest) -> dict[str, Any]:
    row: dict[str, Any] = {"event_id": m.event_id, "ts": m.ts, "job_id": m.job_id,
                           "policy": m.policy, "idle_since": m.idle_since, "reason": m.reason}
    if isinstance(m, ReclaimWithdrawn):
        return {**row, "kind": "withdraw", "nodes": [], "gpus": []}
    row.update(kind="warn" if isinstance(m, ReclaimWarning) else "reclaim", tenant=m.tenant,
               queue=m.queue, nodes=[g.node for g in m.gpus], gpus=[g.gpu for g in m.gpus],
               util_mean=m.util_mean, threshold=m.threshold)
    if isinstance(m, ReclaimWarning):
        row["reclaim_at"] = m.reclaim_at
    else:
        row["action"] = m.action
    return row


def drain_row(m: GpuDrain | GpuUndrain) -> dict[str, Any]:
    row: dict[str, Any] = {"event_id": m.event_id, "ts": m.ts, "cluster": m.cluster,
                           "node": m.node, "gpu": m.gpu, "uuid": m.uuid, "reason": m.reason}
    if isinstance(m, GpuDrain):
        return {**row, "kind": "drain", "cause": str(m.cause), "jobs": m.jobs, "since": m.since}
    return {**row, "kind": "undrain", "jobs": [], "since": m.drained_since,
            "healthy_since": m.healthy_since}


def rightsizing_row(m: RightSizingReport) -> dict[str, Any]:
    return {name: getattr(m, name) for name in m.__struct_fields__ if name != "schema"}


def loop_row(m: Message) -> tuple[str, dict[str, Any]] | None:
    """The table and row of one loop message; None for any other message."""
    match m:
        case ReclaimWarning() | ReclaimWithdrawn() | ReclaimRequest():
            return "reclaims", reclaim_row(m)
        case GpuDrain() | GpuUndrain():
            return "gpu_drains", drain_row(m)
        case RightSizingReport():
            return "job_rightsizing", rightsizing_row(m)
    return None
