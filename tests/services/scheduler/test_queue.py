"""Queue-order plugins: priority, fair share (DRF on GPUs), quotas with borrowing."""

from __future__ import annotations

import pytest
from sched_builders import JobBuilder, cycle_state, make_cluster, make_job, make_node

from services.scheduler.framework import PluginArgs
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
