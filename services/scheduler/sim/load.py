"""Load for the time-based replay: the span over which it is offered and measured, and the
speedup of the arrivals that offers a given share of the cluster's GPUs."""

from __future__ import annotations

from collections.abc import Sequence

from services.scheduler.sim.trace import Task

EARLY_SHARE = 0.01  # the earliest arrivals left out of the measured window (see arrival_window)


def arrival_window(created: Sequence[float]) -> tuple[float, float]:
    """The span over which load is offered and measured: from the arrival that 1 % of the
    tasks precede, to the last. The shipped trace is a snapshot of a running cluster: a few
    of its tasks were created months before the rest arrive (services that ran all along);
    they still run in the replay, but the months before the others come are not measured."""
    if not created:
        return 0.0, 0.0
    ordered = sorted(created)
    return ordered[int(EARLY_SHARE * (len(ordered) - 1))], ordered[-1]


def offered_load(tasks: Sequence[Task], capacity_milli: int, speedup: float) -> float:
    """GPU share the GPU tasks would hold, were every one placed on arrival, over capacity,
    time-averaged over the arrival window (arrivals ``speedup`` times closer)."""
    gpu = [t for t in tasks if t.num_gpu > 0]
    first, last = arrival_window([t.created / speedup for t in gpu])
    if last <= first or capacity_milli <= 0:
        return 0.0
    held = 0.0
    for t in gpu:
        begin = t.created / speedup
        held += t.demand_milli * max(0.0, min(begin + (t.runtime_s or 1.0), last)
                                     - max(begin, first))
    return held / capacity_milli / (last - first)


def speedup_for(tasks: Sequence[Task], capacity_milli: int, load: float) -> float:
    """The speedup at which the offered load over the arrival window is ``load`` (1.3: 130 %
    of capacity), found by bisection (the load grows with the speedup)."""
    lo, hi = 1e-3, 1e7
    if offered_load(tasks, capacity_milli, hi) < load:
        raise ValueError(f"the tasks cannot reach {load:.0%} of this capacity at any speedup")
    for _ in range(100):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if offered_load(tasks, capacity_milli, mid) < load else (lo, mid)
        if hi / lo < 1.0001:
            break
    return hi
