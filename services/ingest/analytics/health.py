"""Health drains: an unhealthy GPU is drained at once, and returns after being healthy a while.

Driven by node inventories (``nodes``): each GPU's ``health`` and ``health_reason`` as the
node's telemetry reports them (XID errors, row-remapping failures, a GPU lost from NVML), and
GPUs that vanish from a node's list (lost). The clock that returns a drained GPU is event time:
the inventories, and the GPU's closed windows (``tick``), so a replay decides the same.

1. A GPU reported unhealthy (or missing) and not drained is drained: ``GpuDrain`` with the cause,
   the reason, and the jobs running on it (to be stopped and requeued), and a critical alert.
2. A drained GPU reported healthy starts its healthy streak; reported unhealthy again, the
   streak ends.
3. A drained GPU whose healthy streak reaches ``undrain_after_s`` returns: ``GpuUndrain``, and
   the alert resolves.
"""

from __future__ import annotations

from msgspec import Struct

from gpufleet.contracts import (
    Alert,
    AlertState,
    DrainCause,
    GpuDrain,
    GpuHealth,
    GpuInfo,
    GpuUndrain,
    Message,
    NodeInventory,
)

from .idle import stable_event_id

KIND = "gpu_drain"


class DrainState(Struct, kw_only=True):
    cluster: str
    node: str
    gpu: int
    uuid: str = ""
    cause: DrainCause
    reason: str
    since: float
    healthy_since: float | None = None


def health_key(cluster: str, node: str, gpu: int) -> str:
    return f"{cluster}/{node}/{gpu}"


def cause_of(info: GpuInfo | None) -> tuple[DrainCause, str] | None:
    """Why a GPU must be drained, or None when it is healthy."""
    if info is None:
        return DrainCause.LOST, "GPU missing from the node's inventory"
    if info.health is GpuHealth.OK:
        return None
    reason = info.health_reason or str(info.health)
    low = reason.lower()
    if info.health is GpuHealth.LOST:
        cause = DrainCause.LOST
    elif "xid" in low:
        cause = DrainCause.XID
    elif "remap" in low:
        cause = DrainCause.ROW_REMAP
    elif "ecc" in low:
        cause = DrainCause.ECC
    else:
        cause = DrainCause.DEGRADED
    return cause, reason


def observe_gpu(cur: DrainState | None, cluster: str, node: str, gpu: int, info: GpuInfo | None,
                ts: float, jobs: list[str], undrain_after_s: float) -> tuple[
                    DrainState | None, list[Message]]:
    """One GPU as one inventory reports it (``info`` None: missing from it)."""
    found = cause_of(info)
    if found is not None:
        if cur is not None:
            cur.healthy_since = None
            return cur, []
        cause, reason = found
        cur = DrainState(cluster=cluster, node=node, gpu=gpu, uuid=info.uuid if info else "",
                         cause=cause, reason=reason, since=ts)
        return cur, _drain(cur, jobs)
    if cur is None:
        return None, []
    if cur.healthy_since is None:
        cur.healthy_since = ts
    return tick(cur, ts, undrain_after_s)


def observe_node(drains: dict[int, DrainState], known: set[int], inv: NodeInventory,
                 jobs_on: dict[int, list[str]], undrain_after_s: float) -> tuple[
                     dict[int, DrainState | None], list[Message]]:
    """A node's inventory: each GPU's drain state after it (None: not drained), and messages.

    ``drains``: the node's GPUs drained now; ``known``: the GPUs the node had reported before,
    so a GPU that is no longer listed counts as lost. An offline node is the scheduler's lease
    to handle, not a drain.
    """
    if not inv.online:
        return {}, []
    listed = {g.index: g for g in inv.gpus}
    out: list[Message] = []
    after: dict[int, DrainState | None] = {}
    for gpu in sorted(set(listed) | known | set(drains)):
        state, msgs = observe_gpu(drains.get(gpu), inv.cluster, inv.node, gpu, listed.get(gpu),
                                  inv.ts, jobs_on.get(gpu, []), undrain_after_s)
        after[gpu] = state
        out += msgs
    return after, out


def tick(cur: DrainState, now: float, undrain_after_s: float) -> tuple[
        DrainState | None, list[Message]]:
    """Time passes (an inventory, or a closed window of the GPU): return it when it is due."""
    if cur.healthy_since is None or now - cur.healthy_since < undrain_after_s:
        return cur, []
    return None, _undrain(cur, now)


def _alert_id(cur: DrainState) -> str:
    return f"{KIND}:{health_key(cur.cluster, cur.node, cur.gpu)}:{int(cur.since)}"


def _drain(cur: DrainState, jobs: list[str]) -> list[Message]:
    moved = f"; jobs {', '.join(jobs)} stopped and requeued" if jobs else ""
    text = f"GPU {cur.gpu} on {cur.node} drained ({cur.cause}): {cur.reason}{moved}"
    return [
        GpuDrain(cluster=cur.cluster, node=cur.node, gpu=cur.gpu, uuid=cur.uuid, cause=cur.cause,
                 reason=text[:500], jobs=jobs[:1000], since=cur.since, ts=cur.since,
                 event_id=stable_event_id("drain", _alert_id(cur))),
        Alert(alert_id=_alert_id(cur), kind=KIND, state=AlertState.FIRING, severity="critical",
              cluster=cur.cluster, node=cur.node, gpu=cur.gpu, message=text, since=cur.since,
              ts=cur.since, event_id=stable_event_id(_alert_id(cur), AlertState.FIRING)),
    ]


def _undrain(cur: DrainState, now: float) -> list[Message]:
    assert cur.healthy_since is not None
    healthy_min = (now - cur.healthy_since) / 60
    text = (f"GPU {cur.gpu} on {cur.node} returned: healthy for {healthy_min:.0f} min "
            f"after {cur.cause} ({cur.reason})")
    return [
        GpuUndrain(cluster=cur.cluster, node=cur.node, gpu=cur.gpu, uuid=cur.uuid,
                   reason=text[:500], drained_since=cur.since, healthy_since=cur.healthy_since,
                   ts=now, event_id=stable_event_id("undrain", _alert_id(cur))),
        Alert(alert_id=_alert_id(cur), kind=KIND, state=AlertState.RESOLVED, severity="critical",
              cluster=cur.cluster, node=cur.node, gpu=cur.gpu, message=text, since=cur.since,
              ts=now, event_id=stable_event_id(_alert_id(cur), AlertState.RESOLVED)),
    ]
