"""The placement policies the simulator compares: score plugins on top of the same filters."""

from __future__ import annotations

from collections.abc import Sequence

from services.scheduler.framework import PluginArgs
from services.scheduler.jobs import Job
from services.scheduler.pipeline import Profile
from services.scheduler.plugins import REGISTRY
from services.scheduler.sim.trace import Task

FILTERS = ("health", "gpumodel", "fits", "gang")
# name -> score plugins ("name:weight"); in "fgd+bestfit", best fit (under one point)
# breaks FGD's ties; in "fgd+balance", FGD chooses among the nodes that keep CPU for their
# free GPUs (balance weighs four times FGD).
POLICIES: dict[str, tuple[str, ...]] = {
    "random": ("random",),
    "spread": ("spread",),
    "packing": ("packing",),
    "bestfit": ("bestfit",),
    "fgd": ("fgd",),
    "fgd-paper": ("fgd-paper",),
    "fgd+bestfit": ("fgd", "bestfit:0.009"),
    "fgd+balance": ("fgd", "balance:4"),
}
DEFAULT = ("random", "packing", "bestfit", "fgd", "fgd+bestfit", "fgd+balance")
PAPER_NAME = {"random": "Random", "packing": "GpuPacking", "bestfit": "BestFit", "fgd": "FGD",
              "fgd-paper": "FGD"}


def typical(tasks: Sequence[Task]) -> tuple[tuple[Job, float], ...]:
    """The trace's tasks as FGD's workload (each task counts once)."""
    return tuple((t.job(t.name), 1.0) for t in tasks)


def profile_for(policy: str, tasks: Sequence[Task]) -> Profile:
    if policy not in POLICIES:
        raise KeyError(f"unknown policy {policy!r}; known: {', '.join(POLICIES)}")
    args = PluginArgs(workload=typical(tasks))
    return Profile.build(REGISTRY, [*FILTERS, *POLICIES[policy]], args)
