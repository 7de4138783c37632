"""FGD: what counts as fragment, every job class kept, and the per-shape cache."""

from __future__ import annotations

import numpy as np
import pytest
from sched_builders import cycle_state, make_cluster, make_job, make_node

from services.scheduler.cluster import Cluster, NodeSpec, Slot
from services.scheduler.plugins.fgd import Fgd, fragmentation, workload_of

SHARE = make_job("s").share(500).cpu(8000).build()
WHOLE = make_job("w").gpus(1).cpu(2000).build()


def _frag(cluster: Cluster, jobs: list[tuple[object, float]]) -> list[float]:
    w = workload_of(jobs)  # type: ignore[arg-type]
    ids = cluster.shape[: cluster.n_nodes]
    host = cluster.shapes.host[ids]
    ok = np.ones((len(ids), len(w.sets)), bool)
    return [float(x) for x in fragmentation(w, cluster.shapes.eff[ids], host, ok)]


@pytest.mark.parametrize(("name", "cpu_left", "used", "jobs", "expected"), [
    ("a node with room for every kind has no fragment", 64_000, (), [(SHARE, 1.0)], 0.0),
    ("CPU exhausted: all free GPU share is fragment", 4_000, (), [(SHARE, 1.0)], 2000.0),
    ("a GPU with less free than the share is fragment", 64_000, ((0, 700),), [(SHARE, 1.0)],
     300.0),
    ("weighted by how common each kind is", 64_000, ((0, 700),),
     [(SHARE, 1.0), (WHOLE, 1.0)], 0.5 * 300 + 0.5 * 300),
])
def test_fragmentation(name: str, cpu_left: int, used: tuple[tuple[int, int], ...],
                       jobs: list[tuple[object, float]], expected: float) -> None:
    c = Cluster()
    c.upsert(NodeSpec("n", "T4", 2, cpu_milli=cpu_left, memory_mib=1 << 20))
    for gpu, milli in used:
        c.allocate(Slot(0, (gpu,), milli))
    assert _frag(c, jobs) == [pytest.approx(expected)], name


def test_every_job_class_is_kept() -> None:
    jobs = [(make_job(f"j{i}").share(10 + i).build(), 1.0) for i in range(100)]
    w = workload_of(jobs)
    assert len(w.weight) == 100 and w.weight.sum() == pytest.approx(1.0)


def test_cpu_only_jobs_add_nothing() -> None:
    assert len(workload_of([(make_job("c").gpus(0).build(), 1.0)]).weight) == 0


def test_cached_scores_equal_fresh_ones() -> None:
    """After many placements, the plugin's cached scores are what a new plugin computes."""
    c = make_cluster()
    for i in range(12):
        c = c.node(make_node(f"n{i}").gpus(4).cpu(32_000))
    cluster = c.build()
    jobs = [make_job(f"j{i}").share(100 * (1 + i % 9)).cpu(1000 * (i % 5)).build()
            for i in range(40)] + [make_job("w").gpus(2).cpu(4000).build()]
    workload = tuple((j, 1.0) for j in jobs)
    warm = Fgd(workload_of(workload))
    rng = np.random.default_rng(3)
    state = cycle_state()
    for step in range(60):
        job = jobs[int(rng.integers(len(jobs)))]
        cpu_free = (cluster.cpu_total - cluster.cpu_used)[: cluster.n_nodes]
        fits = np.flatnonzero((cluster.best[: cluster.n_nodes] >= job.milli)
                              & (cpu_free >= job.cpu_milli))
        if not len(fits):
            break
        state.candidates = fits
        got = warm.score(state, job, cluster)
        want = Fgd(workload_of(workload)).score(state, job, cluster)
        assert np.allclose(got, want), step
        node = int(fits[int(np.argmax(got))])
        cluster.allocate(Slot(node, cluster.pick_gpus(node, job.gpus, job.milli), job.milli,
                              job.cpu_milli))


def test_nodes_with_the_same_free_shape_share_an_id() -> None:
    cluster = (make_cluster().node(make_node("a").gpus(2)).node(make_node("b").gpus(2))
               .node(make_node("c").gpus(2)).use("a", (0,), 300).use("b", (1,), 300)
               .build())
    a, b, c = cluster.shape[:3].tolist()
    assert a == b != c
    distinct, index = cluster.by_shape(np.arange(3))
    assert distinct[index].tolist() == [a, b, c]


@pytest.mark.parametrize(("name", "job", "expected"), [
    ("a share goes to the one partly used node", make_job("j").share(500).build(), {"n7"}),
    ("both gang members on the partly used node", make_job("g").gpus(1).gang(2).build(),
     {"n7"}),
])
def test_a_large_fleet_scores_one_node_per_shape(monkeypatch: pytest.MonkeyPatch, name: str,
                                                 job: object, expected: set[str]) -> None:
    from services.scheduler import pipeline
    from services.scheduler.framework import PluginArgs
    from services.scheduler.plugins import REGISTRY

    monkeypatch.setattr(pipeline, "GROUP_ABOVE", 4)
    c = make_cluster()
    for i in range(12):
        c = c.node(make_node(f"n{i}").gpus(4))
    cluster = c.use("n7", (0,), 500).build()
    assert len(cluster.representatives(np.arange(12))) == 2
    profile = pipeline.Profile.build(REGISTRY, ["health", "fits", "gang", "bestfit"],
                                     PluginArgs())
    attempt = profile.place(cycle_state(), job, cluster)  # type: ignore[arg-type]
    assert attempt.status.ok, name
    assert {cluster.names[s.node] for s in attempt.slots} == expected, name
