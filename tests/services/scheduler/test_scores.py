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
    use_at_random,
)

from services.scheduler.cluster import Cluster, Slot
from services.scheduler.framework import PluginArgs, ShapeScore
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
    ("fgd: a task with no GPU goes where the least GPU share is free", "fgd",
     make_job("j").gpus(0).cpu(4000), PARTLY, "busy"),
    ("balance: the node that keeps CPU for its free GPUs", "balance",
     make_job("j").gpus(1).cpu(8000),
     make_cluster().node(make_node("short").cpu(16_000)).node(make_node("long").cpu(96_000)),
     "long"),
    ("balance: a node left with no GPU free strands none", "balance",
     make_job("j").gpus(1).cpu(8000),
     make_cluster().node(make_node("last").cpu(8000)).use("last", (0, 1, 2, 3, 4, 5, 6))
     .node(make_node("roomy").cpu(64_000)), "last"),
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


def _busy_cluster(seed: int) -> Cluster:
    """Forty nodes of two models and sizes, with random shares, whole GPUs and CPU taken."""
    b = make_cluster()
    for i in range(40):
        b = b.node(make_node(f"n{i}").gpus(8 if i % 3 else 4).model("A" if i % 2 else "B")
                   .domains(*((0, 0, 1, 1) if i % 3 == 0 else (0, 0, 0, 0, 1, 1, 1, 1))))
    return use_at_random(b.build(), seed)


SHAPE_JOBS = [make_job("share").share(300), make_job("share-cpu").share(650).cpu(24_000),
              make_job("cpu-only").gpus(0).cpu(8_000),
              make_job("one").gpus(1), make_job("two").gpus(2).memory(1 << 18),
              make_job("four").gpus(4).cpu(8_000), make_job("model").gpus(1).models("A")]


@pytest.mark.parametrize("plugin", ["fgd", "fgd-paper", "bestfit", "topology", "balance"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shape_scores_are_the_node_scores(plugin: str, seed: int) -> None:
    """A ShapeScore scores each distinct free shape as its nodes: the pipeline may score
    shapes instead of nodes and choose the same."""
    c = _busy_cluster(seed)
    workload = tuple((j.build(), 1.0) for j in SHAPE_JOBS)
    for job in SHAPE_JOBS:
        p = REGISTRY[plugin](PluginArgs(workload=workload))
        assert isinstance(p, ShapeScore)
        state = cycle_state()
        state.candidates = np.flatnonzero(c.model_mask(job.build().models))
        by_node = p.score(state, job.build(), c)
        c._by_shape = None
        ids, index = c.by_shape(state.candidates)
        assert len(ids) < len(state.candidates)  # some nodes share a shape
        by_shape = p.score_shapes(state, job.build(), c, ids)
        assert by_shape[index].tolist() == by_node.tolist(), job.build().job_id


@pytest.mark.parametrize(("name", "gpus_free", "cpu_free", "job", "score"), [
    ("keeps 8.5 cores for each of 7 free GPUs", 8, 59_500, make_job("j").gpus(1), 100.0),
    ("keeps more than that", 8, 96_000, make_job("j").gpus(1).cpu(8000), 100.0),
    ("keeps half of it", 8, 38_250, make_job("j").gpus(1).cpu(8500), 50.0),
    ("a share leaves its GPU room for a task", 1, 4250, make_job("j").share(500), 50.0),
    ("a share leaves its GPU too little room", 1, 0, make_job("j").share(900), 100.0),
    ("no CPU left beside free GPUs", 4, 8000, make_job("j").gpus(1).cpu(8000), 0.0),
    ("no GPU left free", 2, 2000, make_job("j").gpus(2).cpu(2000), 100.0),
    ("a task with no GPU spends the CPU of free GPUs", 2, 25_500,
     make_job("j").gpus(0).cpu(17_000), 50.0),
])
def test_balance_scores(name: str, gpus_free: int, cpu_free: int, job: JobBuilder,
                        score: float) -> None:
    node = make_node("n").gpus(8).cpu(cpu_free)
    c = make_cluster().node(node).use("n", tuple(range(8 - gpus_free))).build()
    state = cycle_state()
    state.candidates = np.arange(1)
    got = REGISTRY["balance"](PluginArgs()).score(state, job.build(), c)  # type: ignore[attr-defined]
    assert got.tolist() == pytest.approx([score]), name


def test_node_dependent_scores_are_not_shape_scores() -> None:
    assert not isinstance(REGISTRY["random"](PluginArgs()), ShapeScore)
    assert not isinstance(REGISTRY["loadaware"](PluginArgs()), ShapeScore)


def test_fgd_paper_leaves_ties_of_tasks_without_gpus_to_chance() -> None:
    c = PARTLY.build()
    workload = ((make_job("w1").share(500).build(), 1.0), (make_job("w2").gpus(1).build(), 1.0))
    state = cycle_state()
    state.candidates = np.arange(c.n_nodes)
    job = make_job("j").gpus(0).cpu(4000).build()
    paper = REGISTRY["fgd-paper"](PluginArgs(workload=workload)).score(  # type: ignore[attr-defined]
        state, job, c)
    ours = REGISTRY["fgd"](PluginArgs(workload=workload)).score(  # type: ignore[attr-defined]
        state, job, c)
    assert paper[0] == paper[1]  # the fragmentation does not change on either node
    assert np.floor(ours).tolist() == paper.tolist() and ours[1] > ours[0]
    assert (ours - paper).max() < 1  # under one point: it only breaks ties
