"""The closed loop through the core: drains, reclaim requests and warnings in; stops, reasons
and placements out, each loop plugin on or off by settings. One row per case."""

from __future__ import annotations

from typing import Any

import pytest
from sched_builders import make_node

from gpufleet.contracts import (
    DrainCause,
    GpuDrain,
    GpuRef,
    GpuUndrain,
    JobEvent,
    JobSpec,
    JobState,
    Placement,
    ReclaimRequest,
    ReclaimWarning,
    ReclaimWithdrawn,
    StopJob,
    SubmitJob,
)
from services.scheduler.config import SchedulerSettings
from services.scheduler.core import SchedulerCore
from services.scheduler.profile import build_profile
from services.scheduler.recovery import record_of

ALL_ON = {"scheduler_filters": "health,gpumodel,drained,fits", "scheduler_loop": "reclaim"}
IDLE = "reclaimed: idle below 5 % for 30 min under policy research-default"


def placed_core(**settings: Any) -> tuple[SchedulerCore, Placement]:
    """Two nodes of two GPUs; job ``j`` (one GPU) placed."""
    core = SchedulerCore(build_profile(SchedulerSettings(**settings)), clock=lambda: 100.0)
    for name in ("a", "b"):
        core.handle(make_node(name).gpus(2).inventory())
    core.handle(SubmitJob(job=JobSpec(job_id="j", gpus=1)))
    placed = [m for m in core.cycle() if isinstance(m, Placement)]
    assert len(placed) == 1
    return core, placed[0]


def drain(p: Placement, gpu: int | None = None) -> GpuDrain:
    return GpuDrain(cluster="test", node=p.node, gpu=p.gpus[0] if gpu is None else gpu,
                    cause=DrainCause.XID, reason="XID 79 (fell off the bus)", since=90.0,
                    jobs=["j"])


def reclaim(p: Placement, action: str = "requeue", gpu: int | None = None) -> ReclaimRequest:
    return ReclaimRequest(job_id="j", policy="research-default", action=action,  # type: ignore[arg-type]
                          gpus=[GpuRef(node=p.node, gpu=p.gpus[0] if gpu is None else gpu)],
                          idle_since=0.0, util_mean=1.0, threshold=5.0,
                          reason=IDLE + ("; requeued" if action == "requeue" else
                                         "; stopped, not restartable"))


def stops(out: list[Any]) -> list[tuple[str, str]]:
    return [(m.node, m.reason) for m in out if isinstance(m, StopJob)]


def reasons(out: list[Any], state: JobState) -> list[str]:
    return [m.reason or "" for m in out if isinstance(m, JobEvent) and m.state == state]


@pytest.mark.parametrize(("name", "settings", "make", "stop", "why"), [
    ("a drain moves the job off its GPU", ALL_ON, drain, "preempted",
     "moved off a drained GPU: XID 79 (fell off the bus)"),
    ("a drain of another GPU leaves it", ALL_ON, lambda p: drain(p, 1 - p.gpus[0]), None, None),
    ("drains off: a drain changes nothing", {"scheduler_loop": "reclaim"}, drain, None, None),
    ("a reclaim request stops and requeues", ALL_ON, reclaim, "preempted", IDLE + "; requeued"),
    ("a reclaim of a job that may not restart stops it for good", ALL_ON,
     lambda p: reclaim(p, "stop"), "cancelled", IDLE + "; stopped, not restartable"),
    ("reclaim off: the request is ignored", {"scheduler_filters": "health,fits,drained"},
     reclaim, None, None),
    ("a stale request (other GPUs) is ignored", ALL_ON, lambda p: reclaim(p, gpu=1 - p.gpus[0]),
     None, None),
])
def test_loop_inputs_stop_jobs_through_the_preemption_path(
        name: str, settings: dict[str, str], make: Any, stop: str | None,
        why: str | None) -> None:
    core, p = placed_core(**settings)
    out = core.handle(make(p))
    assert stops(out) == ([(p.node, stop)] if stop else []), name
    assert reasons(out, JobState.PREEMPTING) == ([why] if why else []), name
    assert core.running["j"].stopping == (stop is not None)
    assert core.handle(make(p)) == []  # once: the job is stopping now


@pytest.mark.parametrize(("name", "make", "end", "requeued"), [
    ("drained: requeued and placed again elsewhere", drain, JobState.PREEMPTED, True),
    ("reclaimed: requeued and placed again", reclaim, JobState.PREEMPTED, True),
    ("reclaimed, not restartable: ends cancelled, with the reclaim as its reason",
     lambda p: reclaim(p, "stop"), JobState.CANCELLED, False),
])
def test_after_the_stop(name: str, make: Any, end: JobState, requeued: bool) -> None:
    core, p = placed_core(**ALL_ON)
    msg = make(p)
    core.handle(msg)
    out = core.handle(JobEvent(job_id="j", state=end, node=p.node, attempt=0,
                               source="executor"))
    if not requeued:
        assert out == [] and "j" not in core.running and not core.pending
        assert core.records["j"].state == end
        assert core.records["j"].reason == msg.reason
        return
    assert reasons(out, JobState.QUEUED) == [f"{reason_of(msg)}; back in its queue"]
    again = [m for m in core.cycle() if isinstance(m, Placement)]
    assert len(again) == 1 and again[0].attempt == 1
    if isinstance(msg, GpuDrain):
        assert (again[0].node, again[0].gpus) != (p.node, p.gpus)


def reason_of(msg: Any) -> str:
    return f"moved off a drained GPU: {msg.reason}" if isinstance(msg, GpuDrain) else msg.reason


def test_a_drained_gpu_takes_nothing_until_it_is_undrained() -> None:
    core = SchedulerCore(build_profile(SchedulerSettings(**ALL_ON)), clock=lambda: 100.0)
    core.handle(make_node("a").gpus(2).inventory())
    core.handle(SubmitJob(job=JobSpec(job_id="j", gpus=2)))
    core.handle(GpuDrain(cluster="test", node="a", gpu=1, cause=DrainCause.ECC,
                         reason="ECC errors on GPU 1", since=1.0))
    assert not [m for m in core.cycle() if isinstance(m, Placement)]
    assert core.records["j"].reason == ("the GPUs that would fit are drained: GPU 1 on a: "
                                        "ECC errors on GPU 1")
    core.handle(GpuUndrain(cluster="test", node="a", gpu=1, reason="healthy for 15 min",
                           drained_since=1.0, healthy_since=2.0))
    placed = [m for m in core.cycle() if isinstance(m, Placement)]
    assert [(m.node, m.gpus) for m in placed] == [("a", [0, 1])]


def test_a_drain_before_the_inventory_marks_the_gpu_when_it_comes() -> None:
    core = SchedulerCore(build_profile(SchedulerSettings(**ALL_ON)), clock=lambda: 100.0)
    core.handle(GpuDrain(cluster="test", node="a", gpu=0, cause=DrainCause.XID, reason="XID 48",
                         since=1.0))
    core.handle(make_node("a").gpus(2).inventory())
    core.handle(SubmitJob(job=JobSpec(job_id="j", gpus=1)))
    placed = [m for m in core.cycle() if isinstance(m, Placement)]
    assert [(m.node, m.gpus) for m in placed] == [("a", [1])]


@pytest.mark.parametrize(("name", "settings", "msgs", "reason"), [
    ("a warning shows in the running job's reason", ALL_ON,
     [ReclaimWarning(job_id="j", policy="p", idle_since=0, reclaim_at=600, util_mean=1,
                     threshold=5, reason="idle below 5 % for 30 min under policy p")],
     "warned: idle below 5 % for 30 min under policy p"),
    ("a withdrawal replaces it", ALL_ON,
     [ReclaimWarning(job_id="j", policy="p", idle_since=0, reclaim_at=600, util_mean=1,
                     threshold=5, reason="idle"),
      ReclaimWithdrawn(job_id="j", policy="p", idle_since=0, reason="its GPUs are busy again")],
     "not reclaimed: its GPUs are busy again"),
    ("reclaim off: warnings are not shown", {"scheduler_filters": "health,fits"},
     [ReclaimWarning(job_id="j", policy="p", idle_since=0, reclaim_at=600, util_mean=1,
                     threshold=5, reason="idle")], ""),
])
def test_reclaim_warnings_are_the_jobs_reason(name: str, settings: dict[str, str],
                                              msgs: list[Any], reason: str) -> None:
    core, _ = placed_core(**settings)
    core.take_touched()
    for msg in msgs:
        assert core.handle(msg) == []
    assert record_of(core, "j").reason == reason
    assert core.take_touched() == (["j"] if reason else [])


@pytest.mark.parametrize(("name", "settings", "react", "lend", "draining"), [
    ("off by default", {}, [], [], False),
    ("drains by the filter", {"scheduler_filters": "health,drained,fits"}, ["drained"], [],
     True),
    ("reclaim and opportunistic by the loop setting",
     {"scheduler_loop": "reclaim,opportunistic"}, ["reclaim", "opportunistic"],
     ["opportunistic"], False),
])
def test_the_loop_plugins_come_from_the_settings(name: str, settings: dict[str, str],
                                                 react: list[str], lend: list[str],
                                                 draining: bool) -> None:
    core = SchedulerCore(build_profile(SchedulerSettings(**settings)), clock=lambda: 0.0)
    assert [p.name for p in core.loop.plugins] == react, name
    assert [p.name for p in core.loop.lenders] == lend, name
    assert core.loop.draining == draining, name


def test_an_unknown_loop_plugin_stops_the_start() -> None:
    with pytest.raises(KeyError, match="unknown plugin 'reclaimx'"):
        build_profile(SchedulerSettings(scheduler_loop="reclaimx"))
