"""Reclaim: a job whose GPUs all stay idle under its policy is warned, then reclaimed.

Driven by the job's closed windows (event time), one step per window:

1. A window at or over the policy's ``min_util`` is busy: the idle streak ends (a warning
   still pending is withdrawn). A job that keeps any one of its GPUs busy is never reclaimed.
2. An idle window starts the streak (no earlier than the end of the job's last busy window),
   or extends it. Once the streak reaches ``idle_timeout``, the job is warned: a
   ``ReclaimWarning`` and an alert, naming when its GPUs will be reclaimed.
3. A window that ends at or after ``reclaim_at`` (the warning plus ``grace``), the streak
   unbroken, reclaims the job: a ``ReclaimRequest`` to requeue it (restartable) or stop it.

A window of a GPU no newer than the last one seen from that GPU is a replay and changes
nothing; every message's event id is derived from what it is about, so a replay after a crash
makes the same ids.
"""

from __future__ import annotations

from msgspec import Struct, field

from gpufleet.contracts import (
    Alert,
    AlertState,
    GpuRef,
    GpuUtilWindow,
    Message,
    ReclaimRequest,
    ReclaimWarning,
    ReclaimWithdrawn,
)

from .idle import stable_event_id
from .jobs import JobRecord
from .policy import ReclaimPolicy

KIND = "idle_reclaim"


class ReclaimState(Struct, kw_only=True):
    job_id: str
    attempt: int = 0
    policy: str = "-"
    idle_since: float | None = None
    busy_until: float = 0.0  # end of the latest busy window
    util_sum: float = 0.0  # over the idle streak's windows
    util_n: int = 0
    warned_at: float | None = None
    reclaim_at: float | None = None
    reclaimed: bool = False
    seen: dict[str, float] = field(default_factory=dict)  # "node/gpu" -> latest window start


def observe(cur: ReclaimState | None, job: JobRecord | None, policy: ReclaimPolicy | None,
            w: GpuUtilWindow) -> tuple[ReclaimState | None, list[Message]]:
    """One closed window attributed to a job: the job's reclaim state after it, and messages."""
    if w.job_id is None or policy is None:
        return cur, []
    attempt = job.attempt if job is not None else 0
    if cur is None or attempt > cur.attempt:
        cur = ReclaimState(job_id=w.job_id, attempt=attempt)
    cur.policy = policy.name
    gpu = f"{w.node}/{w.gpu}"
    if w.window_start <= cur.seen.get(gpu, -1.0) or cur.reclaimed:
        return cur, []
    cur.seen[gpu] = w.window_start
    end = w.window_start + w.window_s
    if w.util_mean >= policy.min_util:
        return _busy(cur, policy, end)
    if cur.idle_since is None:
        cur.idle_since = max(w.window_start, cur.busy_until)
        cur.util_sum, cur.util_n = 0.0, 0
    cur.util_sum += w.util_mean
    cur.util_n += 1
    out: list[Message] = []
    if cur.warned_at is None and end - cur.idle_since >= policy.idle_timeout_s:
        cur.warned_at, cur.reclaim_at = end, end + policy.grace_s
        out += _warn(cur, job, policy, w)
    if cur.reclaim_at is not None and end >= cur.reclaim_at:
        cur.reclaimed = True
        out += _reclaim(cur, job, policy, w)
    return cur, out


def on_job_end(cur: ReclaimState | None) -> list[Message]:
    """The job ended: a warning still pending is withdrawn."""
    if cur is None or cur.warned_at is None or cur.reclaimed or cur.idle_since is None:
        return []
    return _withdraw(cur, cur.warned_at, "the job ended")


def _busy(cur: ReclaimState, policy: ReclaimPolicy, end: float) -> tuple[
        ReclaimState, list[Message]]:
    out: list[Message] = []
    if cur.warned_at is not None and cur.idle_since is not None:
        out = _withdraw(cur, end, f"its GPUs are busy again (at or over {policy.min_util:g} %)")
    cur.busy_until = max(cur.busy_until, end)
    cur.idle_since, cur.warned_at, cur.reclaim_at = None, None, None
    cur.util_sum, cur.util_n = 0.0, 0
    return cur, out


def _gpus(job: JobRecord | None, w: GpuUtilWindow) -> list[GpuRef]:
    return list(job.gpus) if job is not None and job.gpus else [GpuRef(node=w.node, gpu=w.gpu)]


def _alert_id(cur: ReclaimState) -> str:
    return f"{KIND}:{cur.job_id}:{cur.attempt}:{int(cur.idle_since or 0)}"


def _mean(cur: ReclaimState) -> float:
    return min(100.0, max(0.0, cur.util_sum / cur.util_n)) if cur.util_n else 0.0


def _warn(cur: ReclaimState, job: JobRecord | None, policy: ReclaimPolicy,
          w: GpuUtilWindow) -> list[Message]:
    assert cur.idle_since is not None and cur.reclaim_at is not None and cur.warned_at is not None
    idle_min = (cur.warned_at - cur.idle_since) / 60
    text = (f"idle below {policy.min_util:g} % for {idle_min:.0f} min under policy "
            f"{policy.name}: GPUs reclaimed in {policy.grace_s / 60:.0f} min unless busy")
    tenant = job.tenant if job is not None else w.tenant
    queue = job.queue if job is not None else None
    eid = stable_event_id("warn", _alert_id(cur))
    return [
        ReclaimWarning(job_id=cur.job_id, tenant=tenant, queue=queue, policy=policy.name,
                       gpus=_gpus(job, w), idle_since=cur.idle_since, reclaim_at=cur.reclaim_at,
                       util_mean=_mean(cur), threshold=policy.min_util, reason=text,
                       ts=cur.warned_at, event_id=eid),
        Alert(alert_id=_alert_id(cur), kind=KIND, state=AlertState.FIRING, severity="warning",
              cluster=w.cluster, node=w.node, job_id=cur.job_id, tenant=tenant,
              message=f"job {cur.job_id}: {text}", since=cur.idle_since, ts=cur.warned_at,
              event_id=stable_event_id(_alert_id(cur), AlertState.FIRING)),
    ]


def _reclaim(cur: ReclaimState, job: JobRecord | None, policy: ReclaimPolicy,
             w: GpuUtilWindow) -> list[Message]:
    assert cur.idle_since is not None and cur.reclaim_at is not None
    restartable = job.restartable if job is not None and job.restartable is not None \
        else policy.requeue
    idle_min = (cur.reclaim_at - cur.idle_since) / 60
    text = (f"reclaimed: idle below {policy.min_util:g} % for {idle_min:.0f} min under policy "
            f"{policy.name}" + ("; requeued" if restartable else "; stopped, not restartable"))
    tenant = job.tenant if job is not None else w.tenant
    at = w.window_start + w.window_s
    return [
        ReclaimRequest(job_id=cur.job_id, tenant=tenant,
                       queue=job.queue if job is not None else None, policy=policy.name,
                       gpus=_gpus(job, w), action="requeue" if restartable else "stop",
                       idle_since=cur.idle_since, util_mean=_mean(cur),
                       threshold=policy.min_util, reason=text, ts=at,
                       event_id=stable_event_id("reclaim", _alert_id(cur))),
        Alert(alert_id=_alert_id(cur), kind=KIND, state=AlertState.RESOLVED, severity="warning",
              cluster=w.cluster, node=w.node, job_id=cur.job_id, tenant=tenant,
              message=f"job {cur.job_id}: {text}", since=cur.idle_since, ts=at,
              event_id=stable_event_id(_alert_id(cur), AlertState.RESOLVED)),
    ]


def _withdraw(cur: ReclaimState, at: float, why: str) -> list[Message]:
    assert cur.idle_since is not None
    text = f"reclaim withdrawn: {why}"
    return [
        ReclaimWithdrawn(job_id=cur.job_id, policy=cur.policy, idle_since=cur.idle_since,
                         reason=text, ts=at, event_id=stable_event_id("withdraw", _alert_id(cur))),
        Alert(alert_id=_alert_id(cur), kind=KIND, state=AlertState.RESOLVED, severity="warning",
              job_id=cur.job_id, message=f"job {cur.job_id}: {text}", since=cur.idle_since,
              ts=at, event_id=stable_event_id(_alert_id(cur), AlertState.RESOLVED)),
    ]
