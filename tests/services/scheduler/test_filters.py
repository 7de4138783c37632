"""Filter plugins: one row per case (name, job, cluster, nodes that pass, reason)."""

from __future__ import annotations

import numpy as np
import pytest
from sched_builders import (
    ClusterBuilder,
    cycle_state,
    make_cluster,
    make_job,
    make_node,
    use_at_random,
)

from services.scheduler.cluster import Cluster
from services.scheduler.framework import Filter, PluginArgs, ShapeFilter
from services.scheduler.jobs import Job
from services.scheduler.plugins import REGISTRY, fits, gpumodel, health

TWO = make_cluster().node(make_node("a").gpus(8)).node(make_node("b").gpus(4).model("A100"))


@pytest.mark.parametrize(("name", "plugin", "job", "cluster", "passes", "reason"), [
    ("whole GPUs fit on both", fits.Fits(), make_job("j").gpus(4), TWO, [True, True], ""),
    ("only the 8-GPU node fits 8", fits.Fits(), make_job("j").gpus(8), TWO, [True, False], ""),
    ("largest free block named", fits.Fits(), make_job("j").gpus(8),
     TWO.use("a", (0,)), [False, False], "the largest free block is 7"),
    ("a share fits a partly used GPU", fits.Fits(), make_job("j").share(300),
     make_cluster().node(make_node("a").gpus(1)).use("a", (0,), 700), [True], ""),
    ("a share too big for what is left", fits.Fits(), make_job("j").share(400),
     make_cluster().node(make_node("a").gpus(1)).use("a", (0,), 700), [False],
     "largest free share on any GPU is 0.3"),
    ("cpu short", fits.Fits(), make_job("j").cpu(200_000), TWO, [False, False],
     "needs 200 CPUs"),
    ("model allowed", gpumodel.GpuModel(), make_job("j").models("A100"), TWO, [False, True], ""),
    ("model missing", gpumodel.GpuModel(), make_job("j").models("H200"), TWO, [False, False],
     "needs GPU model H200"),
    ("any model", gpumodel.GpuModel(), make_job("j"), TWO, [True, True], ""),
    ("offline node", health.Health(), make_job("j"),
     make_cluster().node(make_node("a").offline()).node(make_node("b")), [False, True], ""),
    ("all GPUs lost", health.Health(), make_job("j"),
     make_cluster().node(make_node("a").gpus(2).unhealthy(0, 1)), [False], "no healthy GPU"),
])
def test_filter(name: str, plugin: fits.Fits, job: object, cluster: ClusterBuilder,
                passes: list[bool], reason: str) -> None:
    c = cluster.build()
    state = cycle_state()
    state.feasible = np.ones(c.n_nodes, bool)
    the_job: Job = job.build()  # type: ignore[attr-defined]
    mask, status = plugin.filter(state, the_job, c)
    assert mask.tolist() == passes, name
    assert status.ok == any(passes)
    assert reason in status.reason
    by_shape = plugin.fits_shapes(the_job, c, c.shape[c.view()])  # each node's shape
    assert by_shape.tolist() == passes, name


def _mixed_cluster(seed: int) -> Cluster:
    """Thirty nodes of two models and sizes, some offline or with lost GPUs, with random
    shares, whole GPUs, CPU and memory taken."""
    b = make_cluster()
    for i in range(30):
        node = make_node(f"n{i}").gpus(8 if i % 3 else 4).model("A" if i % 2 else "B")
        if i % 7 == 0:
            node = node.offline()
        elif i % 5 == 0:
            node = node.unhealthy(*range(4 if i % 10 else 1))
        b = b.node(node)
    return use_at_random(b.build(), seed)


FILTER_JOBS = [make_job("share").share(300), make_job("big share").share(800).cpu(40_000),
               make_job("cpu only").gpus(0).cpu(8_000), make_job("one").gpus(1),
               make_job("two").gpus(2).memory(1 << 19), make_job("eight").gpus(8),
               make_job("model").gpus(1).models("A"), make_job("none").models("C")]


@pytest.mark.parametrize("name", ["fits", "health", "gpumodel"])
@pytest.mark.parametrize("seed", [0, 1])
def test_shape_verdicts_are_the_node_verdicts(name: str, seed: int) -> None:
    """A ShapeFilter answers for each free shape as it does for every node of that shape."""
    c = _mixed_cluster(seed)
    plugin = REGISTRY[name](PluginArgs())
    assert isinstance(plugin, ShapeFilter)
    state = cycle_state()
    state.feasible = c.every_node()
    verdicts = set()
    for job in (j.build() for j in FILTER_JOBS):
        mask, _ = plugin.filter(state, job, c)
        ids, index = c.by_shape(np.arange(c.n_nodes))
        assert plugin.fits_shapes(job, c, ids)[index].tolist() == mask.tolist(), job.job_id
        verdicts |= set(mask.tolist())
    assert verdicts == {True, False}


def test_node_dependent_filters_are_not_shape_filters() -> None:
    for name in ("drained", "backfill"):
        plugin = REGISTRY[name](PluginArgs())
        assert isinstance(plugin, Filter) and not isinstance(plugin, ShapeFilter)


def test_an_unhealthy_gpu_is_never_free() -> None:
    c = make_cluster().node(make_node("a").gpus(2).unhealthy(1)).build()
    assert c.eff[0, :2].tolist() == [1000, 0]
    assert int(c.whole[0]) == 1


def test_cached_masks_are_read_only_and_follow_the_inventory() -> None:
    """The filters hand the cluster's cached masks to the pipeline as they are: nothing may
    change one in place, and a new node appears in the next."""
    c = make_cluster().node(make_node("a").model("A")).node(make_node("b").offline()).build()
    masks = (c.every_node(), c.usable_nodes(), c.model_mask(("A",)), c.model_mask(()))
    assert [m.tolist() for m in masks] == [[True, True], [True, False], [True, False],
                                           [True, True]]
    for m in masks:
        with pytest.raises(ValueError):
            m[0] = False
    c.upsert(make_node("c").model("A").build())
    assert [m.tolist() for m in (c.every_node(), c.usable_nodes(), c.model_mask(("A",)))] == [
        [True, True, True], [True, False, True], [True, False, True]]
