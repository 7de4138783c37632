"""What the analytics know of a job: what it asked for (from its placements) and where it runs.

A job's record is built from ``jobs.placements`` (the spec: tenant, queue, GPUs asked,
restartable) and ``jobs.events`` (started, ended). Members of a gang add their GPUs. A newer
attempt (a requeued job placed again) starts a fresh record, so its GPUs and its usage are its
own. Records are kept ``retention_s`` after the job ends, for windows that arrive late.
"""

from __future__ import annotations

from msgspec import Struct, field

from gpufleet.contracts import (
    DUPLICATE_JOB_ID,
    TERMINAL_STATES,
    GpuRef,
    JobEvent,
    JobState,
    Placement,
)


class JobRecord(Struct, kw_only=True):
    job_id: str
    tenant: str | None = None
    queue: str | None = None
    gpus_requested: int = 0
    gpu_milli: int = 1000
    restartable: bool | None = None
    attempt: int = 0
    gpus: list[GpuRef] = field(default_factory=list)
    started_at: float | None = None
    ended_at: float | None = None
    end_state: str | None = None
    settled: bool = False  # its last windows are in and its final report is out


def on_placement(cur: JobRecord | None, msg: Placement) -> JobRecord:
    """The record after a placement of one member of the job."""
    spec = msg.job
    if cur is None or msg.attempt > cur.attempt or cur.ended_at is not None:
        cur = JobRecord(job_id=spec.job_id, attempt=msg.attempt)
    elif msg.attempt < cur.attempt:
        return cur  # a stale placement of an attempt already superseded
    cur.tenant, cur.queue = spec.tenant, spec.queue
    cur.gpus_requested = spec.gpus * spec.gang
    cur.gpu_milli = msg.gpu_milli
    cur.restartable = spec.restartable
    for g in msg.gpus:
        ref = GpuRef(node=msg.node, gpu=g)
        if ref not in cur.gpus:
            cur.gpus.append(ref)
    return cur


def on_event(cur: JobRecord | None, ev: JobEvent) -> tuple[JobRecord | None, bool]:
    """The record after a job event, and whether the event ended the job (just now)."""
    if ev.state is JobState.REJECTED and (ev.reason or "").startswith(DUPLICATE_JOB_ID):
        return cur, False  # the refused second submit, not the job that holds the id
    if cur is None:
        if ev.state is not JobState.STARTED or ev.node is None:
            return None, False
        # a job gpufleet did not place (another system publishes its events)
        cur = JobRecord(job_id=ev.job_id, tenant=ev.tenant, attempt=ev.attempt,
                        gpus_requested=len(ev.gpus or []))
    if ev.attempt < cur.attempt:
        return cur, False
    if ev.state is JobState.STARTED:
        cur.started_at = cur.started_at if cur.started_at is not None else ev.ts
        for g in ev.gpus or []:
            ref = GpuRef(node=ev.node or "", gpu=g)
            if ev.node and ref not in cur.gpus:
                cur.gpus.append(ref)
        return cur, False
    if ev.state in TERMINAL_STATES and cur.ended_at is None:
        cur.ended_at, cur.end_state = ev.ts, str(ev.state)
        return cur, True
    return cur, False


def expired(cur: JobRecord, now: float, retention_s: float) -> bool:
    return cur.ended_at is not None and now - cur.ended_at > retention_s


def running_on(cur: JobRecord, node: str, gpu: int) -> bool:
    return cur.ended_at is None and GpuRef(node=node, gpu=gpu) in cur.gpus
