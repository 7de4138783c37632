"""Score plugins: one row per case (name, plugin, job, cluster, the node that should win)."""

from __future__ import annotations

import numpy as np
import pytest
from sched_builders import (
    ClusterBuilder,
    JobBuilder,
    cycle_state,
    make_cluster,
    make_job,
    make_node,
)

from services.scheduler.cluster import Slot
from services.scheduler.framework import PluginArgs
from services.scheduler.plugins import REGISTRY

PARTLY = (make_cluster().node(make_node("idle").gpus(8)).node(make_node("busy").gpus(8))
          .use("busy", (0, 1, 2, 3, 4, 5)).use("busy", (6,), 500))


@pytest.mark.parametrize(("name", "plugin", "job", "cluster", "winner"), [
    ("best fit: the fuller node", "bestfit", make_job("j").gpus(1), PARTLY, "busy"),
    ("best fit: the tightest GPU", "bestfit", make_job("j").share(500),
     make_cluster().node(make_node("a").gpus(2)).node(make_node("b").gpus(2))
     .use("a", (0,), 300).use("b", (0,), 500), "b"),
    ("spread: the emptier node", "spread", make_job("j").gpus(1), PARTLY, "idle"),
    ("packing: a share joins a partly used GPU", "packing", make_job("j").share(400), PARTLY,
     "busy"),
    ("packing: whole GPUs on a node in use", "packing", make_job("j").gpus(1), PARTLY, "busy"),
    ("topology: one NVLink domain", "topology", make_job("j").gpus(4),
     make_cluster().node(make_node("split").domains(0, 0, 0, 0, 1, 1, 1, 1)).use("split", (0, 4))
     .node(make_node("whole").domains(0, 0, 0, 0, 1, 1, 1, 1)).use("whole", (0, 1, 2)), "whole"),
    ("fgd: keep whole GPUs whole", "fgd", make_job("j").share(500),
     make_cluster().node(make_node("a").gpus(2)).node(make_node("b").gpus(2))
     .use("b", (0,), 500), "b"),
])
def test_score_picks(name: str, plugin: str, job: JobBuilder, cluster: ClusterBuilder,
                     winner: str) -> None:
    c = cluster.build()
    the_job = job.build()
    workload = ((make_job("w1").share(500).build(), 1.0), (make_job("w2").gpus(1).build(), 1.0))
    p = REGISTRY[plugin](PluginArgs(workload=workload))
    state = cycle_state()
    state.candidates = np.arange(c.n_nodes)
    scores = p.score(state, the_job, c)  # type: ignore[attr-defined]
    assert ((scores >= 0) & (scores <= 100)).all()
    assert c.names[int(np.argmax(scores))] == winner, name


def test_topology_keeps_gang_members_together() -> None:
    c = make_cluster().node(make_node("a")).node(make_node("b")).build()
    p = REGISTRY["topology"](PluginArgs())
    state = cycle_state()
    state.candidates = np.arange(2)
    state.members = [Slot(1, (0, 1), 1000)]
    scores = p.score(state, make_job("j").gpus(2).gang(2).build(), c)  # type: ignore[attr-defined]
    assert scores[1] > scores[0]


def test_random_scores_are_bounded_and_repeatable() -> None:
    c = make_cluster().node(make_node("a")).node(make_node("b")).build()
    p = REGISTRY["random"](PluginArgs())
    runs = []
    for _ in range(2):
        state = cycle_state()
        state.candidates = np.arange(2)
        runs.append(p.score(state, make_job("j").build(), c).tolist())  # type: ignore[attr-defined]
    assert runs[0] == runs[1]
    assert all(0 <= s <= 100 for s in runs[0])
