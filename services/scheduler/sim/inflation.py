"""The FGD paper's method: sample tasks until GPU demand is 130 % of capacity, place them one
by one with no departures, and record the GPU allocation ratio after each 1 % of arrived demand.
A task that fits nowhere is skipped and arrival goes on."""

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
    """Tasks drawn with replacement until their GPU demand reaches ``target`` of capacity."""
    out: list[Task] = []
    demand = 0
    while demand < target * capacity_milli:
        task = tasks[int(rng.integers(len(tasks)))]
        out.append(task)
        demand += task.demand_milli
    return out


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
    return Curve(policy, seed, points, placed, len(arrivals) - placed)
