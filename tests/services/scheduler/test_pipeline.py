"""The stages (a plugin must have one; reserve chooses GPUs), gang, preemption and backfill,
through the pipeline and the core."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from sched_builders import (
    ClusterBuilder,
    JobBuilder,
    cycle_state,
    make_cluster,
    make_job,
    make_node,
)

from gpufleet.contracts import JobEvent, JobState, Placement, StopJob, SubmitJob
from services.scheduler import pipeline
from services.scheduler.cluster import Cluster, ShapeTable
from services.scheduler.config import SchedulerSettings
from services.scheduler.core import SchedulerCore
from services.scheduler.framework import SUCCESS, Code, CycleState, PluginArgs, Running, Status
from services.scheduler.jobs import Job
from services.scheduler.pipeline import Profile
from services.scheduler.plugins import REGISTRY, preemption
from services.scheduler.profile import build_profile


def core_on(cluster: ClusterBuilder, **settings: object) -> tuple[SchedulerCore, list[float]]:
    now = [0.0]
    prefixed = {f"scheduler_{k}": v for k, v in settings.items()}
    core = SchedulerCore(build_profile(SchedulerSettings(**prefixed)),  # type: ignore[arg-type]
                         clock=lambda: now[0], cluster=cluster.build())
    return core, now


def submit(core: SchedulerCore, *jobs: JobBuilder) -> list[object]:
    out: list[object] = []
    for j in jobs:
        out += core.handle(SubmitJob(job=j.spec()))
    return out + list(core.cycle())


def placed(out: list[object]) -> dict[str, list[str]]:
    got: dict[str, list[str]] = {}
    for m in out:
        if isinstance(m, Placement):
            got.setdefault(m.job.job_id, []).append(m.node)
    return got


class NoStage:
    name = "nostage"

    def scores(self, state: CycleState, job: Job, cluster: Cluster) -> list[float]:
        return []  # a misspelt stage is no stage


class Choose:
    """A reserve plugin that always prefers ``gpus`` (``None``: no preference)."""

    def __init__(self, name: str, gpus: tuple[int, ...] | None) -> None:
        self.name, self.gpus = name, gpus

    def reserve(self, state: CycleState, job: Job, cluster: Cluster, node: int
                ) -> tuple[int, ...] | None:
        return self.gpus


def test_a_plugin_that_implements_no_stage_is_refused() -> None:
    registry = {**REGISTRY, "nostage": lambda args: NoStage()}
    with pytest.raises(TypeError, match="'nostage' implements no stage"):
        Profile.build(registry, ["fits", "nostage"], PluginArgs())


@pytest.mark.parametrize(("name", "choices", "nodes", "gpus"), [
    ("the first reserve plugin with a preference chooses", [None, (3,), (1,)], 2, (3,)),
    ("no preference: the cluster's best fit", [None], 2, (0,)),
    ("a lone candidate is not weighed: the cluster's best fit", [(3,)], 1, (0,)),
])
def test_reserve_chooses_the_gpus_on_the_chosen_node(
        name: str, choices: list[tuple[int, ...] | None], nodes: int,
        gpus: tuple[int, ...]) -> None:
    registry = {**REGISTRY, **{f"r{i}": (lambda args, c=c, i=i: Choose(f"r{i}", c))
                               for i, c in enumerate(choices)}}
    profile = Profile.build(registry, ["fits", *(f"r{i}" for i in range(len(choices)))],
                            PluginArgs())
    assert [p.name for p in profile.reserves] == [f"r{i}" for i in range(len(choices))]
    builder = make_cluster()
    for n in range(nodes):
        builder = builder.node(make_node(f"n{n}").gpus(4)).use(f"n{n}", (0,), 300)
    attempt = profile.place(cycle_state(), make_job("s").share(500).build(), builder.build())
    assert attempt.status.ok and attempt.slots[0].gpus == gpus, name


@pytest.mark.parametrize(("name", "nodes", "gpu"), [
    # Best fit would take GPU 0 (700 free) and leave 200 no half can use; FGD keeps both halves.
    ("FGD puts a half on the GPU where it leaves no fragment", 2, 1),
    ("a lone candidate: best fit", 1, 0),
])
def test_fgd_reserves_the_gpu_that_fragments_least(name: str, nodes: int, gpu: int) -> None:
    half = make_job("h").share(500).build()
    profile = Profile.build(REGISTRY, ["fits", "fgd"], PluginArgs(workload=((half, 1.0),)))
    builder = make_cluster()
    for n in range(nodes):
        builder = builder.node(make_node(f"n{n}").gpus(2)).use(f"n{n}", (0,), 300)
    attempt = profile.place(cycle_state(), half, builder.build())
    assert attempt.status.ok and attempt.slots[0].gpus == (gpu,), name


@pytest.mark.parametrize(("name", "cluster", "job", "members", "distinct"), [
    ("gang fits across two nodes", make_cluster().node(make_node("a")).node(make_node("b")),
     make_job("g").gpus(8).gang(2), 2, 2),
    ("gang members share a node when they can", make_cluster().node(make_node("a"))
     .node(make_node("b")), make_job("g").gpus(2).gang(3), 3, 1),
    ("gang too big for the free room: none placed", make_cluster().node(make_node("a"))
     .node(make_node("b")).use("b", (0,)), make_job("g").gpus(8).gang(2), 0, 0),
])
def test_gang_all_or_none(name: str, cluster: ClusterBuilder, job: JobBuilder, members: int,
                          distinct: int) -> None:
    core, _ = core_on(cluster)
    out = submit(core, job)
    got = placed(out).get("g", [])
    assert (len(got), len(set(got))) == (members, distinct), name
    if not members:
        assert int(core.cluster.used[:2].sum()) == 1000  # only what was there before
        assert "all or none" in core.records["g"].reason


@pytest.mark.parametrize(("name", "running", "vip", "victims"), [
    ("evicts the one job that frees enough", [make_job("small").gpus(2),
     make_job("big").gpus(6)], make_job("vip").gpus(6).priority(5), ["big"]),
    ("evicts two when one is not enough", [make_job("x").gpus(4), make_job("y").gpus(4)],
     make_job("vip").gpus(8).priority(5), ["x", "y"]),
    ("never an equal priority", [make_job("x").gpus(8).priority(5)],
     make_job("vip").gpus(8).priority(5), []),
])
def test_preemption_smallest_set(name: str, running: list[JobBuilder], vip: JobBuilder,
                                 victims: list[str]) -> None:
    core, _ = core_on(make_cluster().node(make_node("a")))
    submit(core, *running)
    out = submit(core, vip)
    stopped = sorted(m.job_id for m in out if isinstance(m, StopJob))
    assert stopped == victims, name
    for v in victims:  # the executor confirms; the victims go back to the queue
        core.handle(JobEvent(job_id=v, state=JobState.PREEMPTED, source="executor"))
    out = list(core.cycle())
    assert ("vip" in placed(out)) is bool(victims)
    assert all(v in core.pending for v in victims)


def test_preemption_plans_every_gang_member() -> None:
    core, _ = core_on(make_cluster().node(make_node("a")).node(make_node("b")).node(
        make_node("c")))
    submit(core, make_job("x").gpus(8), make_job("y").gpus(8), make_job("z").gpus(8).priority(9))
    out = submit(core, make_job("vip").gpus(8).gang(2).priority(5))
    assert sorted(m.job_id for m in out if isinstance(m, StopJob)) == ["x", "y"]


@pytest.mark.parametrize(("name", "quotas", "tenant", "stopped"), [
    ("a tenant within its quota takes back what another borrows", "a=8,b=0", "a", ["x"]),
    ("a tenant that borrows too takes nothing back", "a=0,b=0", "a", []),
    ("a tenant's own borrowing job is not its victim", "b=0", "b", []),
])
def test_preemption_takes_back_borrowed_quota(name: str, quotas: str, tenant: str,
                                              stopped: list[str]) -> None:
    core = SchedulerCore(build_profile(SchedulerSettings(tenant_quotas=quotas)),
                         clock=lambda: 0.0, cluster=make_cluster().node(make_node("a")).build())
    assert "x" in placed(submit(core, make_job("x").gpus(8).tenant("b")))
    assert core.running["x"].borrowed
    out = submit(core, make_job("vip").gpus(8).tenant(tenant))
    assert sorted(m.job_id for m in out if isinstance(m, StopJob)) == stopped, name


@pytest.mark.parametrize(("name", "borrowing", "victims", "expected"), [
    ("lower priority, or another tenant's borrowing", False, [], ["low", "theirs"]),
    ("a borrowing job evicts no borrower", True, [], ["low"]),
    ("not a job chosen already", False, ["low"], ["theirs"]),
])
def test_evictable(name: str, borrowing: bool, victims: list[str], expected: list[str]) -> None:
    def run(job: JobBuilder, borrowed: bool = False, stopping: bool = False) -> Running:
        return Running(job.build(), [], 0.0, borrowed=borrowed, stopping=stopping)

    runs = {"low": run(make_job("low").priority(1)), "same": run(make_job("same").priority(5)),
            "theirs": run(make_job("theirs").priority(5).tenant("b"), borrowed=True),
            "ours": run(make_job("ours").priority(5).tenant("a"), borrowed=True),
            "going": run(make_job("going"), stopping=True)}
    state = cycle_state(running=runs)
    state.borrowing, state.victims = borrowing, victims
    vip = make_job("vip").priority(5).tenant("a").build()
    assert sorted(r.job.job_id for r in preemption.evictable(state, vip)) == expected, name


def test_preemptor_waits_and_preempts_no_more() -> None:
    core, _ = core_on(make_cluster().node(make_node("a")))
    submit(core, make_job("x").gpus(8))
    first = submit(core, make_job("vip").gpus(8).priority(5))
    again = list(core.cycle()) + submit(core, make_job("other").gpus(1))
    assert [m.job_id for m in first if isinstance(m, StopJob)] == ["x"]
    assert not [m for m in again if isinstance(m, StopJob)]
    assert "waiting for preempted" in core.records["vip"].reason


@pytest.mark.parametrize(("name", "small", "runs_first"), [
    ("a short job backfills", make_job("s").gpus(4).runtime(50), True),
    ("a long job would delay the reservation", make_job("s").gpus(4).runtime(500), False),
    ("no estimate, no backfill onto reserved nodes", make_job("s").gpus(4), False),
])
def test_backfill(name: str, small: JobBuilder, runs_first: bool) -> None:
    core, now = core_on(make_cluster().node(make_node("a")), preemption=False)
    submit(core, make_job("r").gpus(4).runtime(100))
    now[0] = 10.0
    out = submit(core, make_job("big").gpus(8).seq(1), small.seq(2))
    assert ("s" in placed(out)) is runs_first, name
    assert "reserved" in core.records["big"].reason


def test_status_codes_from_post_filters() -> None:
    core, _ = core_on(make_cluster().node(make_node("a")))
    submit(core, make_job("x").gpus(8))
    state = cycle_state(running=core.running)
    job = make_job("vip").gpus(8).priority(1).build()
    assert not core.profile.place(state, job, core.cluster).status.ok
    assert core.profile.explain(state, job, core.cluster).code == Code.WAIT


def test_a_reservation_holds_only_the_nodes_it_needs() -> None:
    cluster = make_cluster().node(make_node("a")).node(make_node("b")).node(make_node("c"))
    core, now = core_on(cluster, preemption=False)
    submit(core, make_job("r").gpus(5).gang(3).runtime(100))  # one job on all three nodes
    now[0] = 10.0
    out = submit(core, make_job("big").gpus(8).seq(5), make_job("s").gpus(3).seq(6))
    assert "reserved" in core.records["big"].reason
    assert "s" in placed(out)  # no estimate, yet two of the three nodes are not reserved


def _profile(scores: tuple[str, ...]) -> Profile:
    workload = ((make_job("w1").share(300).build(), 2.0), (make_job("w2").gpus(1).build(), 1.0),
                (make_job("w3").gpus(2).cpu(16_000).build(), 1.0),
                (make_job("w4").gpus(1).models("B").build(), 1.0))
    return Profile.build(REGISTRY, ["health", "gpumodel", "fits", *scores],
                         PluginArgs(workload=workload))


def _placements(shaped: bool, scores: tuple[str, ...], seed: int,
                profile: Profile | None = None) -> list[tuple[int, ...]]:
    """Place 400 random jobs one by one on 30 nodes, scoring shapes or scoring every node
    (with ``profile`` when given, else a new one)."""
    rng = np.random.default_rng(seed)
    b = make_cluster()
    for i in range(30):
        b = b.node(make_node(f"n{i}").gpus(8 if i % 3 else 4).cpu(64_000 if i % 2 else 96_000)
                   .model("A" if i % 5 else "B"))
    c = b.build()
    profile = profile or _profile(scores)
    profile.shaped = shaped
    state = cycle_state()
    state.rng = np.random.default_rng(seed)
    out: list[tuple[int, ...]] = []
    for i in range(400):
        kind = int(rng.integers(3))
        job = (make_job(f"j{i}").share(int(rng.choice([200, 300, 500, 650]))) if kind == 0 else
               make_job(f"j{i}").gpus(int(rng.choice([1, 2, 4]))))
        if rng.random() < 0.1:
            job = job.models("B")
        attempt = profile.place(state, job.cpu(int(rng.integers(0, 9)) * 2000).build(), c)
        out += [(s.node, *s.gpus, s.milli) for s in attempt.slots] or [(-1,)]
    v = c.view()
    assert (c.cpu_free[v] == c.cpu_total[v] - c.cpu_used[v]).all()
    return out


@pytest.mark.parametrize("scores", [("fgd",), ("fgd", "bestfit:0.009", "topology"),
                                    ("bestfit",), ("fgd-paper",), ("fgd", "balance:4")])
@pytest.mark.parametrize("seed", [0, 1])
def test_scoring_shapes_places_as_scoring_nodes(scores: tuple[str, ...], seed: int) -> None:
    by_shape = _placements(True, scores, seed)
    assert by_shape == _placements(False, scores, seed)
    assert (-1,) in by_shape and len(set(by_shape)) > 100  # the cluster filled; choices varied


@pytest.mark.parametrize("scores", [("fgd", "bestfit:0.009", "topology"), ("bestfit",)])
def test_a_profile_used_on_another_cluster_places_as_a_new_one(scores: tuple[str, ...]) -> None:
    """What a profile keeps by shape id (values, FGD's fragmentation) belongs to one cluster's
    shape table: on the next cluster (the simulator runs seed after seed) it starts over."""
    profile = _profile(scores)
    _placements(True, scores, 0, profile)
    assert _placements(True, scores, 1, profile) == _placements(True, scores, 1)


def test_a_profile_scores_shapes_only_when_every_score_can() -> None:
    assert Profile.build(REGISTRY, ["fits", "fgd", "bestfit", "topology"], PluginArgs()).shaped
    assert not Profile.build(REGISTRY, ["fits", "fgd", "random"], PluginArgs()).shaped


class EmptyButOk:
    """A filter that keeps no node yet says it passed."""

    name = "emptybutok"

    def filter(self, state: CycleState, job: Job, cluster: Cluster
               ) -> tuple[npt.NDArray[np.bool_], Status]:
        return np.zeros(cluster.n_nodes, bool), SUCCESS


def test_a_filter_that_keeps_no_node_leaves_the_member_unplaced() -> None:
    profile = Profile.build({**REGISTRY, "emptybutok": lambda a: EmptyButOk()},
                            ["emptybutok", "fgd"], PluginArgs())
    c = make_cluster().node(make_node("a")).build()
    attempt = profile.place(cycle_state(), make_job("j").gpus(1).build(), c)
    assert attempt.status.code == Code.UNSCHEDULABLE
    assert (attempt.status.reason, attempt.status.plugin) == ("no node fits", "emptybutok")
    assert c.used.sum() == 0


class Counting:
    """A shape score (more free share scores higher) that records the shapes it was asked."""

    name = "counting"

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.version = 0

    def score(self, state: CycleState, job: Job, cluster: Cluster) -> npt.NDArray[np.float64]:
        ids, index = cluster.by_shape(state.candidates)
        return self.score_shapes(state, job, cluster, ids)[index]

    def score_shapes(self, state: CycleState, job: Job, cluster: Cluster,
                     ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        self.asked += ids.tolist()
        return np.asarray(cluster.shapes.eff[ids].sum(axis=1) / 100.0, np.float64)

    def shape_version(self, state: CycleState, cluster: Cluster) -> int:
        return self.version


def test_shape_totals_are_kept_until_a_shape_or_a_version_is_new() -> None:
    counting = Counting()
    profile = Profile.build({**REGISTRY, "counting": lambda a: counting}, ["fits", "counting"],
                            PluginArgs())
    c = make_cluster().node(make_node("a").gpus(4)).node(make_node("b").gpus(4)).node(
        make_node("c").gpus(4)).use("c", (0,)).build()
    state = cycle_state()
    seen: set[int] = set()
    for i in range(6):  # jobs of one shape: each free shape is scored once
        before = set(c.shape[c.view()].tolist())
        assert profile.place(state, make_job(f"j{i}").share(100).build(), c).status.ok
        assert len(counting.asked) == len(set(counting.asked))
        assert set(counting.asked) == seen | before
        seen |= before
    assert len(seen) > 2  # placements made new shapes, and only those were scored
    counting.version += 1  # the plugin's state changed: versions are asked once a cycle ...
    counting.asked = []
    before = set(c.shape[c.view()].tolist())
    assert profile.place(state, make_job("k").share(100).build(), c).status.ok
    assert set(counting.asked) == before - seen  # only the shape the last placement made
    counting.asked = []
    before = set(c.shape[c.view()].tolist())
    state = cycle_state()  # ... so from the next cycle on, every shape is scored again
    assert profile.place(state, make_job("m").share(100).build(), c).status.ok
    assert sorted(counting.asked) == sorted(before)


def test_shape_totals_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "MAX_TOTALS", 1000)
    totals = pipeline.Totals()
    shapes = ShapeTable(1)
    for i in range(300):
        shapes.intern([i], 0, 0, 0)
        row = totals.row(("job shape", i), shapes)
        assert row.shape[0] >= len(shapes) and np.isnan(row).all()
        assert totals.cells == sum(r.shape[0] for r in totals.by_key.values())
        assert totals.cells <= 1000 + row.shape[0]
    assert len(totals.by_key) < 300  # the old rows were dropped
    shapes.reset(1)  # ids renumbered: every row goes
    totals.row("k", shapes)
    assert list(totals.by_key) == ["k"]
