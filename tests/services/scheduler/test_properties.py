"""Properties over random clusters and random streams of requests and events."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from sched_builders import make_node

from gpufleet.contracts import (
    CancelJob,
    JobEvent,
    JobSpec,
    JobState,
    Placement,
    StopJob,
    SubmitJob,
)
from services.scheduler.config import SchedulerSettings
from services.scheduler.core import SchedulerCore
from services.scheduler.framework import Census
from services.scheduler.profile import build_profile

specs = st.builds(
    lambda i, gpus, milli, gang, prio, tenant: JobSpec(
        job_id=f"j{i}", gpus=gpus, gpu_milli=milli, gang=gang, priority=prio, tenant=tenant),
    st.integers(0, 40), st.sampled_from([0, 1, 1, 1, 2, 4, 8, 9]),
    st.sampled_from([1000, 1000, 500, 250, 700, 0, 1500]), st.sampled_from([1, 1, 1, 2, 3]),
    st.integers(0, 2), st.sampled_from(["a", "b"]))
ops = st.lists(st.one_of(
    st.tuples(st.just("submit"), specs),
    st.tuples(st.just("cycle"), st.none()),
    st.tuples(st.just("finish"), st.integers(0, 40)),
    st.tuples(st.just("cancel"), st.integers(0, 40)),
), min_size=1, max_size=40)
nodes = st.lists(st.tuples(st.integers(1, 8), st.sets(st.integers(0, 7), max_size=2)),
                 min_size=1, max_size=4)


def check_gpus(core: SchedulerCore) -> None:
    c = core.cluster
    n = c.n_nodes
    assert (c.used[:n] <= 1000).all() and (c.used[:n] >= 0).all(), "a GPU is over-committed"
    expected = c.used[:n] * 0
    for run in core.running.values():
        for slot in run.slots:
            expected[slot.node, list(slot.gpus)] += slot.milli
    assert (expected == c.used[:n]).all()
    assert core.census == Census.of(core.running.values()), "the census drifted from the jobs"


def check_placements(core: SchedulerCore, out: list[object], healthy: set[tuple[str, int]]
                     ) -> None:
    members = Counter(m.job.job_id for m in out if isinstance(m, Placement))
    for job_id, count in members.items():
        assert count == core.records[job_id].job.gang, "a gang was partly placed"
    for m in out:
        if isinstance(m, Placement):
            assert all((m.node, g) in healthy for g in m.gpus), "placed on a lost GPU"


@settings(max_examples=60, deadline=None)
@given(nodes=nodes, ops=ops, preemption=st.booleans(), fgd=st.booleans())
def test_no_overcommit_no_partial_gang_every_job_accounted(
        nodes: list[tuple[int, set[int]]], ops: list[tuple[str, object]], preemption: bool,
        fgd: bool) -> None:
    settings_ = SchedulerSettings(scheduler_preemption=preemption,
                                  scheduler_scores="fgd,bestfit,topology" if fgd else "spread")
    core = SchedulerCore(build_profile(settings_), clock=lambda: 0.0)
    healthy: set[tuple[str, int]] = set()
    for i, (gpus, sick) in enumerate(nodes):
        b = make_node(f"n{i}").gpus(gpus).unhealthy(*(g for g in sick if g < gpus))
        core.handle(b.inventory())
        healthy |= {(f"n{i}", g) for g in range(gpus) if g not in sick}
    submitted: set[str] = set()
    rejected: set[str] = set()
    for kind, arg in [*ops, ("cycle", None)]:
        out: list[object] = []
        if kind == "submit":
            assert isinstance(arg, JobSpec)
            out = list(core.handle(SubmitJob(job=arg)))
            submitted.add(arg.job_id)
        elif kind == "cycle":
            out = list(core.cycle())
        elif kind == "finish" and core.running:  # one of the running jobs ends
            assert isinstance(arg, int)
            job_id = sorted(core.running)[arg % len(core.running)]
            run = core.running[job_id]
            core.handle(JobEvent(job_id=job_id, state=JobState.SUCCEEDED, attempt=run.attempt))
        elif kind == "cancel":
            out = list(core.handle(CancelJob(job_id=f"j{arg}")))
        for m in out:
            if isinstance(m, JobEvent) and m.state == JobState.REJECTED and (
                    not (m.reason or "").startswith("duplicate")):
                rejected.add(m.job_id)
            if isinstance(m, StopJob):  # the executor confirms at once
                run = core.running[m.job_id]
                state = JobState.PREEMPTED if m.reason == "preempted" else JobState.CANCELLED
                core.handle(JobEvent(job_id=m.job_id, state=state, attempt=run.attempt))
        check_gpus(core)
        check_placements(core, out, healthy)
    for job_id in submitted:
        rec = core.records[job_id]
        where = (job_id in core.pending, job_id in core.running, job_id in rejected,
                 rec.state in (JobState.SUCCEEDED, JobState.CANCELLED))
        assert sum(where) == 1, f"{job_id} is in {where}"
        if job_id in core.pending:
            assert rec.reason, f"{job_id} waits without a reason"
