"""Score: best fit. The node left with the least free GPU share after the member lands scores
highest, which keeps large holes open for large jobs: 100 / (1 + GPUs left), so a node's score
does not depend on the other candidates. Equal fits are broken at random by the pipeline (on
the Alibaba trace this beats breaking them by CPU left)."""

from __future__ import annotations

import numpy as np

from services.scheduler.cluster import Cluster, IntArray
from services.scheduler.framework import CycleState, FloatArray, PluginArgs, fit_score
from services.scheduler.jobs import FULL, Job

NAME = "bestfit"



def leftover(job: Job, cluster: Cluster, nodes: IntArray) -> FloatArray:
    """Free GPU share of each node (in GPUs) once the member is placed there; for a share,
    plus what is left on the GPU it fits most tightly (so the tightest GPU wins first).
    Computed once per free shape among the nodes."""
    distinct, index = cluster.by_shape(nodes)
    return leftover_shapes(job, cluster, distinct)[index]


def tightest(eff: IntArray, milli: int) -> IntArray:
    """Per row of free shares ``eff``: the least free share of ``milli`` or more (the GPU a
    share of ``milli`` fits most tightly), or more than a whole GPU where none has room."""
    return np.asarray(np.where(eff >= milli, eff, FULL + 1).min(axis=1), np.int64)


def leftover_shapes(job: Job, cluster: Cluster, ids: IntArray) -> FloatArray:
    """``leftover`` of a node of each shape in ``ids``."""
    eff = cluster.shapes.eff[ids]
    left = (eff.sum(axis=1) - job.gpus * job.milli) / FULL
    if job.milli < FULL:
        left = left + (tightest(eff, job.milli) - job.milli) / FULL
    return np.asarray(left, np.float64)


class BestFit:
    name = NAME

    def score(self, state: CycleState, job: Job, cluster: Cluster) -> FloatArray:
        return fit_score(leftover(job, cluster, state.candidates))

    def score_shapes(self, state: CycleState, job: Job, cluster: Cluster, ids: IntArray
                     ) -> FloatArray:
        return fit_score(leftover_shapes(job, cluster, ids))

    def shape_version(self, state: CycleState, cluster: Cluster) -> None:
        return None


def factory(args: PluginArgs) -> BestFit:
    return BestFit()
