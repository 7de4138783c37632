"""Checks that decoding cannot make: values that are typed right but cannot be true.

Each check returns a reason (a short sentence) or ``None``; a message with a reason goes to the
dead-letter topic.
"""

from __future__ import annotations

from gpufleet.contracts import GPU_MILLI, GpuSample, JobEvent, NodeSample

EARLIEST_TS = 946_684_800.0  # 2000-01-01: anything older is a clock that was never set
MIN_TEMP_C, MAX_TEMP_C = -40, 150
MAX_POWER_MW = 5_000_000  # 5 kW for one GPU is not a GPU


def timestamp_reason(ts: float, now: float, max_future_s: float) -> str | None:
    if ts != ts or ts < EARLIEST_TS:
        return f"timestamp {ts!r} is before 2000-01-01"
    if ts > now + max_future_s:
        return f"timestamp {ts:.3f} is {ts - now:.0f}s in the future (limit {max_future_s:.0f}s)"
    return None


def gpu_reason(g: GpuSample) -> str | None:
    if g.temp_c is not None and not MIN_TEMP_C <= g.temp_c <= MAX_TEMP_C:
        return f"gpu {g.index}: temperature {g.temp_c} C is impossible"
    if g.power_mw is not None and g.power_mw > MAX_POWER_MW:
        return f"gpu {g.index}: power {g.power_mw} mW is impossible"
    return None


def sample_reason(msg: NodeSample, now: float, max_future_s: float) -> str | None:
    """Why a decoded node sample cannot be used, or ``None`` when it can."""
    reason = timestamp_reason(msg.ts, now, max_future_s)
    if reason is not None:
        return reason
    gpus = msg.gpus
    if len({g.index for g in gpus}) < len(gpus):
        seen: set[int] = set()
        for g in gpus:
            if g.index in seen:
                return f"gpu index {g.index} appears twice"
            seen.add(g.index)
    for g in gpus:  # per GPU: the common case, in range, costs two comparisons
        t, p = g.temp_c, g.power_mw
        if (t is not None and not MIN_TEMP_C <= t <= MAX_TEMP_C) or (
                p is not None and p > MAX_POWER_MW):
            return gpu_reason(g)
    return None


def event_reason(ev: JobEvent, now: float, max_future_s: float) -> str | None:
    reason = timestamp_reason(ev.ts, now, max_future_s)
    if reason is not None:
        return reason
    if ev.gpus and ev.node is None:
        return "gpus given without a node"
    if ev.gpu_milli is not None and not 1 <= ev.gpu_milli <= GPU_MILLI:
        return f"gpu_milli {ev.gpu_milli} is outside 1..{GPU_MILLI}"
    return None
