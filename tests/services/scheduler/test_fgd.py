"""FGD: what counts as fragment, the task kinds, the score, the reserves and the per-shape
cache."""

from __future__ import annotations

import numpy as np
import pytest
from sched_builders import cycle_state, make_cluster, make_job, make_node

from services.scheduler.cluster import Cluster, NodeSpec, Slot
from services.scheduler.jobs import Job
from services.scheduler.plugins.fgd import (
    Fgd,
    Workload,
    fragmentation,
    pending_workload,
    whole_score,
    workload_of,
)

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
    host = np.stack([rng.integers(0, 48, rows) * 1000, rng.integers(0, 128, rows) * 1024,
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


WHOLE_1 = [make_job(f"w{i}").gpus(1).cpu(1000).build() for i in range(99)]
SHARE_550 = [make_job("s").share(550).cpu(1000).build()]
SHARE_500 = [make_job("a").share(500).cpu(1000).build(), make_job("w").gpus(1).cpu(1000).build()]
TWO_KINDS = [make_job("j").share(200).cpu(1000).build(), make_job("w").gpus(2).cpu(1000).build()]


@pytest.mark.parametrize(("name", "plugin", "used", "share", "workload", "gpu"), [
    ("equal: fgd takes the tightest GPU", "fgd", (400, 500), 200, TWO_KINDS, 1),
    ("equal: fgd-paper takes the first GPU", "fgd-paper", (400, 500), 200, TWO_KINDS, 0),
    ("a whole GPU kept whole: fgd", "fgd", (0, 500), 200, SHARE_500, 1),
    ("a whole GPU kept whole: fgd-paper skips the first GPU", "fgd-paper", (0, 500), 200,
     SHARE_500, 1),
    ("slightly less fragment: fgd takes it", "fgd", (400, 500), 50, WHOLE_1 + SHARE_550, 1),
    ("slightly less fragment, the same whole score: fgd-paper takes the first GPU",
     "fgd-paper", (400, 500), 50, WHOLE_1 + SHARE_550, 0),
])
def test_a_share_takes_the_gpu_the_reserve_chooses(name: str, plugin: str,
                                                   used: tuple[int, int], share: int,
                                                   workload: list[Job], gpu: int) -> None:
    from services.scheduler.framework import PluginArgs
    from services.scheduler.plugins import REGISTRY

    c = make_cluster().node(make_node("n").gpus(2).cpu(64_000)).node(
        make_node("m").gpus(2).cpu(64_000))
    for g, milli in enumerate(used):
        if milli:
            c = c.use("n", (g,), milli)
    cluster = c.build()
    job = make_job("j").share(share).cpu(1000).build()
    fgd = REGISTRY[plugin](PluginArgs(workload=tuple((j, 1.0) for j in workload)))
    state = cycle_state()
    state.candidates = np.arange(2)
    fgd.score(state, job, cluster)  # type: ignore[attr-defined]
    assert fgd.reserve(state, job, cluster, 0) == (gpu,), name  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "workload"), [
    ("no workload", []),
    ("CPU-only kinds only: every placement loses the same", [make_job("c").gpus(0).cpu(8000)
                                                              .build()]),
])
def test_a_workload_that_tells_nodes_apart_by_nothing_scores_them_alike(
        name: str, workload: list[Job]) -> None:
    cluster = (make_cluster().node(make_node("a").gpus(2).cpu(64_000))
               .node(make_node("b").gpus(4).cpu(64_000)).use("a", (0,), 300).build())
    fgd = Fgd(workload_of((j, 1.0) for j in workload))
    state = cycle_state()
    state.candidates = np.arange(2)
    for job in (make_job("s").share(500).build(), make_job("w").gpus(1).build()):
        scores = fgd.score(state, job, cluster)
        assert scores[0] == scores[1], name


def _mix(n_big: int, memory: int = 1000) -> Workload:
    jobs = [make_job(f"a{i}").share(500).memory(memory).build() for i in range(100 - n_big)]
    jobs += [make_job(f"b{i}").gpus(1).build() for i in range(n_big)]
    return workload_of((j, 1.0) for j in jobs)


@pytest.mark.parametrize(("name", "other", "close"), [
    ("the same mix", _mix(50), True),
    ("one job in a hundred changed kind", _mix(51), True),
    ("five in a hundred changed kind", _mix(55), False),
    ("a kind's memory moved 2 %", _mix(50, 1020), True),
    ("a kind's memory moved 10 %", _mix(50, 1100), False),
])
def test_a_pending_mix_that_moved_little_keeps_the_cache(name: str, other: Workload,
                                                         close: bool) -> None:
    assert _mix(50).close_to(other) == close, name


@pytest.mark.parametrize("memory", [True, False])
def test_the_pending_workload_counts_jobs_of_one_shape_once(memory: bool) -> None:
    """Read by shape, the queue gives the very workload its jobs give one by one."""
    rng = np.random.default_rng(3)
    jobs = [make_job(f"j{i}").share(int(rng.choice([250, 500]))).cpu(int(rng.integers(0, 4))
                                                                      * 1000)
            .memory(int(rng.choice([0, 1000, 3000]))).build() if i % 3 else
            make_job(f"j{i}").gpus(int(rng.choice([0, 1, 2]))).models(
                *(("A",) if i % 2 else ())).build() for i in range(300)]
    by_shape = pending_workload(cycle_state(pending=jobs), memory)
    one_by_one = workload_of([(j, 1.0) for j in jobs], memory=memory)
    assert len({j.shape for j in jobs}) < len(jobs) / 5  # many jobs share a shape
    for name in Workload.__dataclass_fields__:
        mine, theirs = getattr(by_shape, name), getattr(one_by_one, name)
        assert np.array_equal(mine, theirs) if isinstance(mine, np.ndarray) else mine == theirs, \
            name
