"""Queue-order plugins: priority, fair share (DRF on GPUs), quotas with borrowing."""

from __future__ import annotations

import random

import pytest
from sched_builders import JobBuilder, cycle_state, make_cluster, make_job, make_node

from services.scheduler.framework import CycleState, PluginArgs
from services.scheduler.jobs import Job
from services.scheduler.pipeline import Profile
from services.scheduler.plugins import REGISTRY

CLUSTER = make_cluster().node(make_node("a")).build()


@pytest.mark.parametrize(("name", "plugins", "args", "used", "jobs", "order"), [
    ("higher priority first", ["priority"], PluginArgs(), {},
     [make_job("low").priority(0).seq(0), make_job("high").priority(5).seq(1)], ["high", "low"]),
    ("arrival breaks ties", ["priority"], PluginArgs(), {},
     [make_job("b").seq(1), make_job("a").seq(0)], ["a", "b"]),
    ("fair share interleaves tenants", ["fairshare"], PluginArgs(), {},
     [make_job("a1").tenant("a").seq(0), make_job("a2").tenant("a").seq(1),
      make_job("b1").tenant("b").seq(2)], ["a1", "b1", "a2"]),
    ("the tenant holding less goes first", ["fairshare"], PluginArgs(), {"a": 4000},
     [make_job("a1").tenant("a").seq(0), make_job("b1").tenant("b").seq(1)], ["b1", "a1"]),
    ("weights count", ["fairshare"], PluginArgs(weights={"a": 4.0}), {"a": 2000},
     [make_job("a1").tenant("a").seq(1), make_job("b1").tenant("b").seq(0)], ["a1", "b1"]),
    ("within quota before borrowing", ["quota"], PluginArgs(quotas={"a": 1.0}), {"a": 1000},
     [make_job("a1").tenant("a").seq(0), make_job("b1").tenant("b").seq(1)], ["b1", "a1"]),
    ("priority before fair share", ["priority", "fairshare"], PluginArgs(), {"a": 8000},
     [make_job("b1").tenant("b").seq(0), make_job("a1").tenant("a").priority(1).seq(1)],
     ["a1", "b1"]),
])
def test_queue_order(name: str, plugins: list[str], args: PluginArgs, used: dict[str, int],
                     jobs: list[JobBuilder], order: list[str]) -> None:
    profile = Profile.build(REGISTRY, plugins, args)
    built = [j.build() for j in jobs]
    state = cycle_state(pending=built, capacity=8000, tenant_used=dict(used))
    assert [j.job_id for j in profile.order(state, built, CLUSTER)] == order, name


@pytest.mark.parametrize(("borrowing", "ok", "borrows"),
                         [(True, True, True), (False, False, False)])
def test_quota_pre_filter(borrowing: bool, ok: bool, borrows: bool) -> None:
    plugin = REGISTRY["quota"](PluginArgs(quotas={"a": 2.0}, borrowing=borrowing))
    state = cycle_state(tenant_used={"a": 2000})
    status = plugin.pre_filter(state, make_job("j").tenant("a").build(), CLUSTER)  # type: ignore[attr-defined]
    assert status.ok is ok
    assert state.borrowing is borrows
    assert ok or "quota of 2 GPUs" in status.reason


def _shares_job_by_job(state: CycleState, jobs: list[Job], weights: dict[str, float]
                       ) -> list[float]:
    """Fair share's projected shares worked out one job at a time, in arrival order."""
    held = dict(state.tenant_used)
    out: dict[str, float] = {}
    for job in sorted(jobs, key=lambda j: j.seq):
        held[job.tenant] = held.get(job.tenant, 0) + job.demand_milli
        out[job.job_id] = held[job.tenant] / state.capacity_milli / weights.get(job.tenant, 1.0)
    return [out[j.job_id] for j in jobs]


@pytest.mark.parametrize("seed", range(5))
def test_fair_share_column_equals_job_by_job(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randrange(1, 60)
    jobs = [make_job(f"j{i}").tenant(rng.choice("abcd")).gpus(gpus).share(share)
            .gang(rng.choice([1, 2])).seq(seq).build()
            for i, seq in enumerate(rng.sample(range(10_000), n))
            for gpus, share in [rng.choice([(1, 250), (1, 1000), (2, 1000), (8, 1000)])]]
    weights = {"a": 2.0, "b": 0.5}
    state = cycle_state(pending=jobs, capacity=64_000, tenant_used={"a": 3000, "c": 8000})
    got = REGISTRY["fairshare"](PluginArgs(weights=weights)).keys(  # type: ignore[attr-defined]
        state, jobs, CLUSTER)
    assert got.tolist() == _shares_job_by_job(state, jobs, weights)


def test_queue_order_of_no_jobs() -> None:
    profile = Profile.build(REGISTRY, ["priority", "quota", "fairshare"],
                            PluginArgs(quotas={"a": 1.0}))
    assert profile.order(cycle_state(), [], CLUSTER) == []
