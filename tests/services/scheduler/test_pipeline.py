"""Gang, preemption and backfill, through the pipeline and the core."""

from __future__ import annotations

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
from services.scheduler.config import SchedulerSettings
from services.scheduler.core import SchedulerCore
from services.scheduler.framework import Code
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
