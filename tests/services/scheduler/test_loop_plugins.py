"""The closed loop in the scheduler: load-aware scores, drained GPUs, and which jobs reclaim
requests and drains stop. One row per case."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sched_builders import ClusterBuilder, cycle_state, make_cluster, make_job, make_node

from gpufleet.contracts import (
    DrainCause,
    GpuDrain,
    GpuRef,
    GpuUndrain,
    GpuUtilWindow,
    NodeInventory,
    ReclaimRequest,
)
from services.scheduler.cluster import Slot
from services.scheduler.framework import Code, PluginArgs, Running
from services.scheduler.loopstops import Ignored, LoopStop, drain_stops, reclaim_stops
from services.scheduler.measured import DRAINS, MEASURED, Drains, MeasuredLoad
from services.scheduler.plugins import REGISTRY

NOW = 10_000.0


def measured(**p95_by_node: float) -> MeasuredLoad:
    m = MeasuredLoad(max_age_s=300)
    for node, p95 in p95_by_node.items():
        m.observe(GpuUtilWindow(cluster="c", node=node, gpu=0, window_start=NOW - 120,
                                samples=60, util_mean=p95, util_min=0, util_max=p95,
                                util_p95=p95), now=NOW)
    return m


# two nodes, GPU 0 of each half given out: equal on allocated share, different when measured
HALF = (make_cluster().node(make_node("a").gpus(1)).node(make_node("b").gpus(1))
        .use("a", (0,), 500).use("b", (0,), 500))


@pytest.mark.parametrize(("name", "job", "cluster", "load", "expected"), [
    ("a share goes where the owner is measured idle", make_job("j").share(300), HALF,
     measured(a=90.0, b=10.0), {"a": 10.0, "b": 90.0}),
    ("without measurements the allocated share stands in", make_job("j").share(300), HALF,
     None, {"a": 50.0, "b": 50.0}),
    ("a stale window counts as none", make_job("j").share(300), HALF,
     MeasuredLoad(max_age_s=30, gpus=measured(a=90.0).gpus), {"a": 50.0, "b": 50.0}),
    ("whole GPUs: no preference", make_job("j").gpus(1),
     make_cluster().node(make_node("a").gpus(1)).node(make_node("b").gpus(1)),
     measured(a=90.0), {"a": 100.0, "b": 100.0}),
    ("a node where the share does not fit scores 0", make_job("j").share(600), HALF,
     measured(a=0.0, b=0.0), {"a": 0.0, "b": 0.0}),
])
def test_loadaware_scores(name: str, job: Any, cluster: ClusterBuilder,
                          load: MeasuredLoad | None, expected: dict[str, float]) -> None:
    c = cluster.build()
    state = cycle_state(memo={MEASURED: load} if load is not None else {})
    state.now = NOW
    state.candidates = np.arange(c.n_nodes)
    scores = REGISTRY["loadaware"](PluginArgs()).score(state, job.build(), c)  # type: ignore[attr-defined]
    assert dict(zip(c.names, scores.tolist(), strict=True)) == expected


def test_memory_in_use_lowers_the_headroom() -> None:
    m = MeasuredLoad()
    m.observe_inventory(NodeInventory(cluster="c", node="a", gpus=[]))
    m.memory_total[("a", 0)] = 100
    m.observe(GpuUtilWindow(cluster="c", node="a", gpu=0, window_start=NOW - 60, samples=60,
                            util_mean=5, util_min=0, util_max=5, util_p95=5,
                            mem_used_bytes_mean=80.0), now=NOW)
    load = m.load("a", 0, NOW)
    assert load is not None and load.mem_frac == pytest.approx(0.8)
    c = HALF.build()
    state = cycle_state(memo={MEASURED: m})
    state.now, state.candidates = NOW, np.arange(c.n_nodes)
    scores = REGISTRY["loadaware"](PluginArgs()).score(state, make_job("j").share(300).build(), c)  # type: ignore[attr-defined]
    assert scores.tolist()[0] == pytest.approx(20.0)


def drains(*gpus: tuple[str, int]) -> Drains:
    d = Drains()
    for node, gpu in gpus:
        d.observe(GpuDrain(cluster="c", node=node, gpu=gpu, cause=DrainCause.XID,
                           reason=f"XID 79 on {node}/{gpu}", since=0.0))
    return d


@pytest.mark.parametrize(("name", "job", "drained", "mask", "code"), [
    ("nothing drained", make_job("j").gpus(2), drains(), [True, True], Code.SUCCESS),
    ("a drained GPU leaves too few", make_job("j").gpus(2), drains(("a", 0)), [False, True],
     Code.SUCCESS),
    ("a drained GPU leaves enough", make_job("j").gpus(1), drains(("a", 0)), [True, True],
     Code.SUCCESS),
    ("everything fitting drained: the reason names them", make_job("j").gpus(2),
     drains(("a", 0), ("b", 1)), [False, False], Code.UNSCHEDULABLE),
    ("a drain of a GPU the node does not have takes nothing off", make_job("j").gpus(2),
     drains(("a", 12)), [True, True], Code.SUCCESS),
])
def test_drained_filter(name: str, job: Any, drained: Drains, mask: list[bool],
                        code: Code) -> None:
    c = make_cluster().node(make_node("a").gpus(2)).node(make_node("b").gpus(2)).build()
    state = cycle_state(memo={DRAINS: drained})
    state.feasible = np.ones(c.n_nodes, bool)
    got, status = REGISTRY["drained"](PluginArgs()).filter(state, job.build(), c)  # type: ignore[attr-defined]
    assert got.tolist() == mask
    assert status.code == code
    if code is Code.UNSCHEDULABLE:
        assert "GPU 0 on a: XID 79 on a/0" in status.reason


def test_drains_mark_the_gpus_unhealthy_in_the_model_and_undrain_returns_them() -> None:
    d = drains(("a", 1))
    spec = make_node("a").gpus(2).build()
    c = make_cluster().build()
    c.upsert(d.apply(spec))
    assert c.eff[0].tolist() == [1000, 0]
    d.observe(GpuUndrain(cluster="c", node="a", gpu=1, reason="ok", drained_since=0,
                         healthy_since=1))
    c.upsert(d.apply(spec))
    assert c.eff[0].tolist() == [1000, 1000]


def running(job: str, node: int, gpus: tuple[int, ...], stopping: bool = False) -> Running:
    return Running(job=make_job(job).gpus(len(gpus)).build(), slots=[Slot(node, gpus, 1000)],
                   started_at=0.0, stopping=stopping)


RUNNING = {"j1": running("j1", 0, (0, 1)), "j2": running("j2", 1, (0,)),
           "j3": running("j3", 1, (1,), stopping=True)}
NAMES = ["a", "b"]


def request(job: str, action: str = "requeue", gpus: tuple[tuple[str, int], ...] = ()) -> Any:
    return ReclaimRequest(job_id=job, policy="p", action=action, idle_since=0, util_mean=1,  # type: ignore[arg-type]
                          threshold=5, reason="reclaimed: idle", gpus=[
                              GpuRef(node=n, gpu=g) for n, g in gpus])


@pytest.mark.parametrize(("name", "req", "enabled", "expected"), [
    ("requeued", request("j1", gpus=(("a", 0), ("a", 1))), True,
     LoopStop("j1", True, "reclaimed: idle")),
    ("stopped", request("j2", "stop"), True, LoopStop("j2", False, "reclaimed: idle")),
    ("reclaim off", request("j1"), False,
     Ignored("j1", "reclaim is off (the reclaim plugin is not in the profile)")),
    ("not running", request("gone"), True, Ignored("gone", "not running (ended, or already "
                                                           "moved)")),
    ("already stopping", request("j3"), True, Ignored("j3", "already stopping")),
    ("stale: moved since", request("j2", gpus=(("a", 0),)), True,
     Ignored("j2", "stale: the job runs on other GPUs now")),
])
def test_reclaim_stops(name: str, req: ReclaimRequest, enabled: bool,
                       expected: LoopStop | Ignored) -> None:
    assert reclaim_stops(req, RUNNING, NAMES, enabled) == expected


@pytest.mark.parametrize(("name", "node", "gpu", "jobs"), [
    ("the job on it is moved", "a", 1, ["j1"]),
    ("a stopping job is left to its stop", "b", 1, []),
    ("nobody on it", "b", 7, []),
])
def test_drain_stops(name: str, node: str, gpu: int, jobs: list[str]) -> None:
    d = GpuDrain(cluster="c", node=node, gpu=gpu, cause=DrainCause.XID, reason="XID 79",
                 since=0)
    stops = drain_stops(d, RUNNING, NAMES)
    assert [s.job_id for s in stops] == jobs
    assert all(s.requeue and s.reason == "moved off a drained GPU: XID 79" for s in stops)


def test_the_loop_plugins_are_enabled_by_settings() -> None:
    from services.scheduler.config import SchedulerSettings
    from services.scheduler.profile import build_profile, plugin_names

    s = SchedulerSettings(scheduler_filters="health,fits,drained",
                          scheduler_scores="bestfit,loadaware:2")
    assert {"drained", "loadaware"} <= {n.split(":")[0] for n in plugin_names(s)}
    build_profile(s)  # builds: both are in the registry


def test_measured_loads_of_gpus_that_stopped_reporting_are_dropped() -> None:
    m = MeasuredLoad(max_age_s=300)

    def window(node: str, start: float) -> GpuUtilWindow:
        return GpuUtilWindow(cluster="c", node=node, gpu=0, window_start=start, samples=60,
                             util_mean=5, util_min=0, util_max=5, util_p95=5)

    for i in range(5000):  # a node name per window, each reporting once, a minute apart
        m.observe(window(f"n{i}", NOW + 60 * i), now=NOW + 60 * i + 60)  # as it closes
        assert len(m.gpus) <= 2 * 1024 + 10
    last = NOW + 60 * 4999 + 60
    assert m.load("n4999", 0, last) is not None
    assert all(last - load.at <= 300 + 60 * 2048 for load in m.gpus.values())
    m.observe(window("steady", NOW + 60 * 4999), now=last)  # a fresh window is kept as before
    assert m.load("steady", 0, last) is not None


def test_a_window_dated_far_ahead_does_not_age_the_others() -> None:
    m = MeasuredLoad(max_age_s=300, sweep_above=10)
    far = GpuUtilWindow(cluster="c", node="liar", gpu=0, window_start=NOW + 10**8, samples=60,
                        util_mean=5, util_min=0, util_max=5, util_p95=5)
    m.observe(far, now=NOW)
    for i in range(20):  # enough to sweep
        m.observe(GpuUtilWindow(cluster="c", node=f"n{i}", gpu=0, window_start=NOW - 120,
                                samples=60, util_mean=5, util_min=0, util_max=5, util_p95=5),
                  now=NOW)
    assert all(m.load(f"n{i}", 0, NOW) is not None for i in range(20))
