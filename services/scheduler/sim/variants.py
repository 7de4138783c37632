"""Workload families: variants of a trace, made the way the FGD paper varies its workloads.

A variant is ``FAMILY:PERCENT``; it draws a new task list (as many GPU tasks as the trace has)
from the trace's own tasks, so every request in it is one the trace made:

* ``share:P``    GPU-sharing tasks (one GPU, a share under 1000) are P % of the GPU tasks;
* ``multigpu:P`` multi-GPU tasks (2+ whole GPUs) ask for P % of the GPU demand;
* ``gpuspec:P``  P % of the GPU tasks may run on one GPU model only (drawn in proportion to
  the GPUs of each model, among the models with nodes large enough for the task);
* ``cpu:P``      CPU-only tasks ask for P % of the CPU the trace's CPU-only tasks ask for.

The same trace, variant and seed give the same tasks (``--variant-seed``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from services.scheduler.cluster import NodeSpec
from services.scheduler.jobs import FULL
from services.scheduler.sim.trace import Task

FAMILIES = ("share", "multigpu", "gpuspec", "cpu")


class VariantError(ValueError):
    """A variant that is not ``FAMILY:PERCENT`` or cannot be made from this trace."""


def parse(text: str) -> tuple[str, float]:
    family, _, pct = text.partition(":")
    try:
        value = float(pct)
    except ValueError:
        value = -1.0
    if family not in FAMILIES or not 0 <= value <= (1000 if family == "cpu" else 100):
        raise VariantError(f"variant {text!r}: expected FAMILY:PERCENT with FAMILY one of "
                           f"{', '.join(FAMILIES)} (e.g. share:100, multigpu:30, gpuspec:33, "
                           "cpu:200)")
    return family, value


def _draw(pool: Sequence[Task], n: int, rng: np.random.Generator) -> list[Task]:
    if n <= 0:
        return []
    if not pool:
        raise VariantError("the trace has no tasks of a kind this variant needs")
    return [pool[int(i)] for i in rng.integers(len(pool), size=n)]


def _mix(a: Sequence[Task], b: Sequence[Task], n: int, share_a: float,
         rng: np.random.Generator) -> list[Task]:
    """``n`` tasks, each drawn from ``a`` with probability ``share_a``, else from ``b``."""
    from_a = int(rng.binomial(n, share_a))
    return _draw(a, from_a, rng) + _draw(b, n - from_a, rng)


def make(tasks: Sequence[Task], nodes: Sequence[NodeSpec], variant: str,
         seed: int = 0) -> list[Task]:
    family, pct = parse(variant)
    rng = np.random.default_rng(seed)
    cpu_only = [t for t in tasks if t.num_gpu == 0]
    gpu = [t for t in tasks if t.num_gpu > 0]
    if family == "share":
        shared = [t for t in gpu if t.num_gpu == 1 and t.gpu_milli < FULL]
        whole = [t for t in gpu if not (t.num_gpu == 1 and t.gpu_milli < FULL)]
        out = list(cpu_only) + _mix(shared, whole, len(gpu), pct / 100, rng)
    elif family == "multigpu":
        multi = [t for t in gpu if t.num_gpu > 1]
        single = [t for t in gpu if t.num_gpu == 1]
        # Demand share P from multi-GPU tasks: pick the count share that gives it on average.
        dm = float(np.mean([t.demand_milli for t in multi])) if multi else 1.0
        ds = float(np.mean([t.demand_milli for t in single])) if single else 1.0
        q = pct / 100
        count_share = q * ds / (q * ds + (1 - q) * dm) if q < 1 else 1.0
        out = list(cpu_only) + _mix(multi, single, len(gpu), count_share, rng)
    elif family == "gpuspec":
        out = list(cpu_only) + _constrain(gpu, nodes, pct / 100, rng)
    else:
        base = sum(t.cpu_milli for t in cpu_only)
        picked: list[Task] = []
        while sum(t.cpu_milli for t in picked) < base * pct / 100:
            picked += _draw(cpu_only, 1, rng)
        out = picked + list(gpu)
    order = rng.permutation(len(out))
    return [replace(out[int(i)], name=f"{family}{pct:g}-{j:05d}") for j, i in enumerate(order)]


def _constrain(gpu: Sequence[Task], nodes: Sequence[NodeSpec], share: float,
               rng: np.random.Generator) -> list[Task]:
    per_model: dict[str, int] = {}
    largest: dict[str, int] = {}
    for n in nodes:
        per_model[n.model] = per_model.get(n.model, 0) + n.gpus
        largest[n.model] = max(largest.get(n.model, 0), n.gpus)
    out = []
    for t in gpu:
        if t.models or rng.random() >= share:
            out.append(t)
            continue
        models = [m for m in sorted(per_model) if largest[m] >= t.num_gpu]
        weights = np.array([per_model[m] for m in models], float)
        model = models[int(rng.choice(len(models), p=weights / weights.sum()))]
        out.append(replace(t, models=(model,)))
    return out


def write(tasks: Sequence[Task], path: Path) -> None:
    """The tasks as a trace CSV (the columns ``load_tasks`` reads)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec",
                    "creation_time", "deletion_time", "scheduled_time"])
        for t in tasks:
            w.writerow([t.name, t.cpu_milli, t.memory_mib, t.num_gpu, t.gpu_milli,
                        "|".join(t.models), f"{t.created:g}",
                        "" if t.deleted is None else f"{t.deleted:g}", f"{t.created:g}"])
