"""FGD: what counts as fragment, the task kinds, the score, the reserves and the per-shape
cache."""

from __future__ import annotations

import numpy as np
import pytest
from sched_builders import cycle_state, make_cluster, make_job, make_node

from services.scheduler.cluster import Cluster, NodeSpec, Slot
from services.scheduler.plugins.fgd import Fgd, fragmentation, whole_score, workload_of

SHARE = make_job("s").share(500).cpu(8000).build()
WHOLE = make_job("w").gpus(1).cpu(2000).build()


def _frag(cluster: Cluster, jobs: list[tuple[object, float]], memory: bool = True
          ) -> list[float]:
    w = workload_of(jobs, memory=memory)  # type: ignore[arg-type]
    ids = cluster.shape[: cluster.n_nodes]
    host = cluster.shapes.host[ids]
    ok = np.ones((len(ids), len(w.sets)), bool)
    return [float(x) for x in fragmentation(w, cluster.shapes.eff[ids], host, ok)]


BIG_MEMORY = make_job("m").share(500).cpu(1000).memory(1 << 19).build()
CPU_ONLY = make_job("c").gpus(0).cpu(4000).build()


@pytest.mark.parametrize(("name", "cpu_left", "used", "jobs", "memory", "expected"), [
    ("a node with room for every kind has no fragment", 64_000, (), [(SHARE, 1.0)], True,
     0.0),
    ("CPU exhausted: all free GPU share is fragment", 4_000, (), [(SHARE, 1.0)], True,
     2000.0),
    ("a GPU with less free than the share is fragment", 64_000, ((0, 700),), [(SHARE, 1.0)],
     True, 300.0),
    ("weighted by how common each kind is", 64_000, ((0, 700),),
     [(SHARE, 1.0), (WHOLE, 1.0)], True, 0.5 * 300 + 0.5 * 300),
    ("memory exhausted: all free GPU share is fragment", 64_000, (), [(BIG_MEMORY, 1.0)],
     True, 2000.0),
    ("the paper's kinds do not look at memory", 64_000, (), [(BIG_MEMORY, 1.0)], False, 0.0),
    ("a CPU-only kind sees every free GPU as fragment", 64_000, ((0, 700),),
     [(CPU_ONLY, 1.0)], True, 1300.0),
])
def test_fragmentation(name: str, cpu_left: int, used: tuple[tuple[int, int], ...],
                       jobs: list[tuple[object, float]], memory: bool, expected: float) -> None:
    c = Cluster()
    c.upsert(NodeSpec("n", "T4", 2, cpu_milli=cpu_left, memory_mib=1 << 18))
    for gpu, milli in used:
        c.allocate(Slot(0, (gpu,), milli))
    assert _frag(c, jobs, memory) == [pytest.approx(expected)], name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fragmentation_per_class_equals_the_sum_over_kinds(seed: int) -> None:
    """The per-class computation is the definition: the weighted sum, kind by kind, of what
    each kind cannot use (all free share, unless it fits: then the GPUs too small for it)."""
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(300):
        gpus = int(rng.choice([0, 1, 1, 2, 4]))
        share = int(rng.choice([100, 300, 500, 1000])) if gpus == 1 else 1000
        job = (make_job(f"j{i}").gpus(gpus).share(share).cpu(int(rng.integers(0, 40)) * 1000)
               .memory(int(rng.integers(0, 64)) * 1024)
               .models(*(["T4"] if rng.random() < 0.3 else [])).build())
        jobs.append((job, 1.0))
    w = workload_of(jobs)  # type: ignore[arg-type]
    rows = 50
    eff = -np.sort(-rng.choice([0, 200, 500, 700, 1000], size=(rows, 4)), axis=1)
    host = np.stack([rng.integers(0, 48, rows) * 1000, rng.integers(0, 64, rows) * 1024,
                     np.zeros(rows, np.int64)], axis=1)
    ok = rng.random((rows, len(w.sets))) < 0.8
    want = np.zeros(rows)
    for k in range(len(w.weight)):
        for r in range(rows):
            fits = ((eff[r] >= w.milli[k]).sum() >= w.gpus[k] and host[r, 0] >= w.cpu_milli[k]
                    and host[r, 1] >= w.memory_mib[k] and ok[r, w.set_of[k]]
                    and not w.cpu_only[k])
            lost = eff[r][eff[r] < w.milli[k]].sum() if fits else eff[r].sum()
            want[r] += w.weight[k] * lost
    assert np.allclose(fragmentation(w, eff, host, ok), want)


def test_every_job_class_is_kept() -> None:
    jobs = [(make_job(f"j{i}").share(10 + i).build(), 1.0) for i in range(100)]
    w = workload_of(jobs)
    assert len(w.weight) == 100 and w.weight.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(("name", "jobs", "popularity", "kinds"), [
    ("one kind per exact CPU request",
     [make_job("a").share(500).cpu(1000).build(), make_job("b").share(500).cpu(2000).build()],
     1.0, {(1, 500, 1000), (1, 500, 2000)}),
    ("a CPU request under 0.1 counts as 0.1",
     [make_job("a").share(500).cpu(0).build(), make_job("b").share(500).cpu(100).build()],
     1.0, {(1, 500, 100)}),
    ("CPU-only jobs are a kind", [make_job("c").gpus(0).cpu(2000).build()], 1.0,
     {(0, 0, 2000)}),
    ("the popularity cut keeps the common kinds, the one crossing it included",
     [make_job(f"a{i}").share(500).build() for i in range(6)]
     + [make_job(f"b{i}").share(300).build() for i in range(3)] + [make_job("c").gpus(8).build()],
     0.7, {(1, 500, 100), (1, 300, 100)}),
])
def test_kinds(name: str, jobs: list[object], popularity: float,
               kinds: set[tuple[int, int, int]]) -> None:
    w = workload_of([(j, 1.0) for j in jobs], popularity)  # type: ignore[misc]
    got = set(zip(w.gpus.tolist(), w.milli.tolist(), w.cpu_milli.tolist(), strict=True))
    assert got == kinds, name
    assert w.weight.sum() == pytest.approx(1.0), name


@pytest.mark.parametrize(("name", "delta", "score"), [
    ("no change scores 50", 0.0, 50.0),
    ("any growth scores less", 1.0, 49.0),
    ("a drop of 0.041 GPU scores more", -41.0, 51.0),
    ("a drop of 0.03 GPU ties with none", -30.0, 50.0),
    ("four whole GPUs lost", 4000.0, 1.0),
    ("rounding noise of a sum does not cross a point", 1e-9, 50.0),
])
def test_the_score_is_the_papers_whole_number(name: str, delta: float, score: float) -> None:
    assert whole_score(np.array([delta])).tolist() == [score], name


@pytest.mark.parametrize(("name", "plugin", "gpu"), [
    ("fgd: the tightest GPU among the best", "fgd", 1),
    ("fgd-paper: the first GPU among the best", "fgd-paper", 0),
])
def test_a_share_takes_the_gpu_the_reserve_chooses(name: str, plugin: str, gpu: int) -> None:
    """GPU 0 has 0.6 free and GPU 1 0.5: a 0.2 share on either leaves a 0.3-0.4 fragment the
    workload cannot use alike; both score the same whole number."""
    from services.scheduler.framework import PluginArgs
    from services.scheduler.plugins import REGISTRY

    cluster = (make_cluster().node(make_node("n").gpus(2).cpu(64_000))
               .node(make_node("m").gpus(2).cpu(64_000)).use("n", (0,), 400)
               .use("n", (1,), 500).build())
    job = make_job("j").share(200).cpu(1000).build()
    workload = ((job, 1.0), (make_job("w").gpus(2).cpu(1000).build(), 1.0))
    fgd = REGISTRY[plugin](PluginArgs(workload=workload))
    state = cycle_state()
    state.candidates = np.arange(2)
    fgd.score(state, job, cluster)  # type: ignore[attr-defined]
    assert fgd.reserve(state, job, cluster, 0) == (gpu,), name  # type: ignore[attr-defined]


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
