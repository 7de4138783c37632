"""Idle allocated GPUs: a state machine per GPU, driven by closed windows.

A GPU whose window belongs to a job and whose mean utilization is under the threshold is
idle; once it has been idle for ``idle_after_s`` of consecutive windows an alert fires, naming
the job, tenant, node and GPU. It resolves when the GPU is busy again, or the job is no longer
on it. Alert and event ids are derived from the condition, so a replayed window makes the same
alert, which consumers and the sink de-duplicate.

``observe_idle`` is the pure step over one GPU's streak (what the analytics app keeps in a
table); ``IdleTracker`` keeps the streaks of many GPUs in a dict (what the ingest writer uses).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from msgspec import Struct

from gpufleet.contracts import Alert, AlertState

GpuKey = tuple[str, str, int]  # cluster, node, gpu index
KIND = "idle_gpu"


class IdleStreak(Struct, kw_only=True):
    job_id: str
    tenant: str | None
    since: float  # start of the first idle window
    firing: bool = False


def observe_idle(cur: IdleStreak | None, key: GpuKey, window_start: float, window_s: int,
                 util_mean: float, job_id: str | None, tenant: str | None, threshold: float,
                 idle_after_s: float) -> tuple[IdleStreak | None, list[Alert]]:
    """One closed window of one GPU: the streak after it, and the alerts that fire or resolve."""
    out: list[Alert] = []
    idle = job_id is not None and util_mean < threshold
    if cur is not None and (not idle or cur.job_id != job_id):
        if cur.firing:
            out.append(_alert(key, cur, AlertState.RESOLVED, window_start))
        cur = None
    if job_id is None or not idle:
        return None, out
    if cur is None:
        cur = IdleStreak(job_id=job_id, tenant=tenant, since=window_start)
    if not cur.firing and window_start + window_s - cur.since >= idle_after_s:
        cur.firing = True
        out.append(_alert(key, cur, AlertState.FIRING, window_start + window_s))
    return cur, out


@dataclass
class IdleTracker:
    threshold: float
    idle_after_s: float
    state: dict[GpuKey, IdleStreak] = field(default_factory=dict)

    def observe(self, key: GpuKey, window_start: float, window_s: int, util_mean: float,
                job_id: str | None, tenant: str | None) -> list[Alert]:
        """Feed one closed window; returns the alerts that fire or resolve with it."""
        streak, out = observe_idle(self.state.get(key), key, window_start, window_s, util_mean,
                                   job_id, tenant, self.threshold, self.idle_after_s)
        if streak is None:
            self.state.pop(key, None)
        else:
            self.state[key] = streak
        return out


def alert_id(key: GpuKey, job_id: str, since: float) -> str:
    cluster, node, gpu = key
    return f"{KIND}:{cluster}:{node}:{gpu}:{job_id}:{int(since)}"


def stable_event_id(*parts: object) -> str:
    """An event id derived from what the event is about, so a replay makes the same one."""
    text = ":".join(str(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _alert(key: GpuKey, cur: IdleStreak, state: AlertState, at: float) -> Alert:
    cluster, node, gpu = key
    aid = alert_id(key, cur.job_id, cur.since)
    idle_min = (at - cur.since) / 60
    text = (f"GPU {gpu} on {node} allocated to job {cur.job_id} has been idle for "
            f"{idle_min:.0f} min" if state is AlertState.FIRING
            else f"GPU {gpu} on {node} is no longer idle under job {cur.job_id}")
    return Alert(alert_id=aid, kind=KIND, state=state, severity="warning", cluster=cluster,
                 node=node, gpu=gpu, job_id=cur.job_id, tenant=cur.tenant, message=text,
                 since=cur.since, ts=at, event_id=stable_event_id(aid, state))
