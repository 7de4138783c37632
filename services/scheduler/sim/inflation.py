"""The FGD paper's method: every task of the trace once in random order, then tasks drawn with
replacement until GPU demand is 130 % of capacity; place them one by one with no departures, and
record the GPU allocation ratio after each 1 % of arrived demand. A task that fits nowhere is
skipped and arrival goes on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from services.scheduler.cluster import Cluster, NodeSpec
from services.scheduler.framework import CycleState
from services.scheduler.pipeline import Profile
from services.scheduler.sim.trace import Task

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Curve:
    policy: str
    seed: int
    points: list[tuple[int, float]]  # (arrived demand %, allocation ratio %)
    placed: int
    skipped: int

    def at(self, pct: int) -> float:
        return dict(self.points).get(pct, self.points[-1][1] if self.points else 0.0)


def sample(tasks: Sequence[Task], capacity_milli: int, target: float,
           rng: np.random.Generator) -> list[Task]:
    """The paper's arrivals: every task of the trace once, in random order, then tasks drawn
    with replacement while the GPU demand stays within ``target`` of capacity; a trace that
    asks for more loses tasks at random until it is within ``target``."""
    out = [tasks[int(i)] for i in rng.permutation(len(tasks))]
    demand = sum(t.demand_milli for t in out)
    limit = target * capacity_milli
    if demand > limit:
        drop = set()
        for i in rng.permutation(len(out)).tolist():
            if demand <= limit:
                break
            drop.add(i)
            demand -= out[i].demand_milli
        return [t for i, t in enumerate(out) if i not in drop]
    while True:
        task = tasks[int(rng.integers(len(tasks)))]
        if demand + task.demand_milli > limit:
            return out
        out.append(task)
        demand += task.demand_milli


def inflate(policy: str, profile: Profile, nodes: Sequence[NodeSpec], tasks: Sequence[Task],
            seed: int, target_pct: int = 130, progress: Progress | None = None) -> Curve:
    cluster = Cluster()
    for spec in nodes:
        cluster.upsert(spec)
    capacity = cluster.capacity_milli()
    rng = np.random.default_rng(seed)
    arrivals = sample(tasks, capacity, target_pct / 100, rng)
    state = CycleState(now=0.0, rng=rng, running={}, capacity_milli=capacity)
    points: list[tuple[int, float]] = []
    arrived = placed = 0
    mark = 0
    for i, task in enumerate(arrivals):
        arrived += task.demand_milli
        if profile.place(state, task.job(f"t{i}", i), cluster).status.ok:
            placed += 1
        while mark <= target_pct and arrived >= mark * capacity / 100:
            points.append((mark, 100.0 * cluster.used_milli() / capacity))
            mark += 1
        if progress is not None and i % 1000 == 0:
            progress(i, len(arrivals))
    # Arrival stops within one task of the target: the marks it did not cross read the end.
    points.extend((m, 100.0 * cluster.used_milli() / capacity) for m in range(mark, target_pct + 1))
    return Curve(policy, seed, points, placed, len(arrivals) - placed)
