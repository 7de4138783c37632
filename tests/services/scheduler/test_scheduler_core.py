"""The core: requests, events and inventory in; placements and events out."""

from __future__ import annotations

import pytest
from sched_builders import make_job, make_node

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
from services.scheduler.profile import build_profile


def new_core(nodes: int = 2) -> SchedulerCore:
    core = SchedulerCore(build_profile(SchedulerSettings()), clock=lambda: 100.0)
    for n in range(nodes):
        core.handle(make_node(f"n{n}").inventory())
    return core


def events(out: list[object], state: JobState) -> dict[str, str]:
    return {m.job_id: m.reason or "" for m in out if isinstance(m, JobEvent) and m.state == state}


@pytest.mark.parametrize(("name", "spec", "reason"), [
    ("zero GPUs", JobSpec(job_id="j", gpus=0), "at least 1 GPU"),
    ("negative GPUs", JobSpec(job_id="j", gpus=-2), "at least 1 GPU"),
    ("a share above one GPU", JobSpec(job_id="j", gpu_milli=1200), "more than one GPU"),
    ("a share of zero", JobSpec(job_id="j", gpu_milli=0), "1..1000"),
    ("a share of several GPUs", JobSpec(job_id="j", gpus=2, gpu_milli=500), "set gpus=1"),
    ("unknown model", JobSpec(job_id="j", gpu_models=["TPUv5"]), "unknown GPU model TPUv5"),
    ("member larger than any node", JobSpec(job_id="j", gpus=16), "largest node has 8"),
    ("gang larger than the cluster", JobSpec(job_id="j", gpus=8, gang=3),
     "larger than the cluster"),
    ("empty gang", JobSpec(job_id="j", gang=0), "at least 1 member"),
])
def test_bad_requests_are_rejected(name: str, spec: JobSpec, reason: str) -> None:
    core = new_core()
    out = core.handle(SubmitJob(job=spec))
    assert reason in events(out, JobState.REJECTED)["j"], name
    assert not core.pending


def test_a_duplicate_id_is_rejected_and_the_first_job_stands() -> None:
    core = new_core()
    core.handle(SubmitJob(job=JobSpec(job_id="j")))
    out = core.handle(SubmitJob(job=JobSpec(job_id="j")))
    assert "duplicate" in events(out, JobState.REJECTED)["j"]
    assert "j" in core.pending


@pytest.mark.parametrize(("name", "running", "stops"), [
    ("a queued job is cancelled at once", False, 0),
    ("a running job is stopped on its node", True, 1),
])
def test_cancel(name: str, running: bool, stops: int) -> None:
    core = new_core(1 if running else 0)
    core.handle(SubmitJob(job=JobSpec(job_id="j")))
    core.cycle()
    out = core.handle(CancelJob(job_id="j"))
    assert len([m for m in out if isinstance(m, StopJob)]) == stops, name
    assert ("j" in events(out, JobState.CANCELLED)) is not running
    if running:
        core.handle(JobEvent(job_id="j", state=JobState.CANCELLED, source="executor"))
        assert not core.running and int(core.cluster.used.sum()) == 0


@pytest.mark.parametrize(("name", "state", "attempt", "frees"), [
    ("success frees", JobState.SUCCEEDED, 0, True),
    ("failure frees", JobState.FAILED, 0, True),
    ("a stale attempt does not", JobState.SUCCEEDED, 3, False),
    ("a heartbeat does not", JobState.HEARTBEAT, 0, False),
])
def test_job_events_free_gpus(name: str, state: JobState, attempt: int, frees: bool) -> None:
    core = new_core(1)
    core.handle(SubmitJob(job=make_job("j").gpus(4).spec()))
    core.cycle()
    core.handle(JobEvent(job_id="j", state=state, attempt=attempt, source="executor"))
    assert (int(core.cluster.used.sum()) == 0) is frees, name


def test_lost_gpus_and_offline_nodes_are_not_placed_on() -> None:
    core = SchedulerCore(build_profile(SchedulerSettings()), clock=lambda: 0.0)
    core.handle(make_node("sick").gpus(8).unhealthy(0, 1, 2, 3, 4, 5, 6).inventory())
    core.handle(make_node("gone").offline().inventory())
    core.handle(SubmitJob(job=JobSpec(job_id="j", gpus=2)))
    out = core.cycle()
    assert not [m for m in out if isinstance(m, Placement)]
    assert "largest free block is 1" in core.records["j"].reason


def test_queued_reason_is_reported_once() -> None:
    core = new_core(1)
    core.handle(SubmitJob(job=JobSpec(job_id="big", gpus=8)))
    core.handle(SubmitJob(job=JobSpec(job_id="big2", gpus=8)))
    first = events(list(core.cycle()), JobState.QUEUED)
    core.dirty = True
    second = events(list(core.cycle()), JobState.QUEUED)
    assert "largest free block is 0" in first["big2"]
    assert second == {}


def test_an_unknown_plugin_stops_the_command_with_a_message(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from gpufleet.cli import main
    monkeypatch.setenv("GPUFLEET_SCHEDULER_SCORES", "fgd,nope")
    assert main(["scheduler"]) == 2
    assert "unknown plugin 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "ends", "used_after", "stopped", "still_running"), [
    ("a member that succeeds frees its own GPUs only",
     [(0, JobState.SUCCEEDED)], 8, [], True),
    ("every member ended frees all",
     [(0, JobState.SUCCEEDED), (1, JobState.SUCCEEDED)], 0, [], False),
    ("a member that fails stops the others, which keep their GPUs until they end",
     [(1, JobState.FAILED)], 8, [0], True),
    ("the stopped member's end frees the rest",
     [(1, JobState.FAILED), (0, JobState.CANCELLED)], 0, [0], False),
    ("a repeated end is one end",
     [(0, JobState.SUCCEEDED), (0, JobState.SUCCEEDED)], 8, [], True),
    ("an end without a member speaks for all",
     [(None, JobState.FAILED)], 0, [], False),
])
def test_gang_members_end_one_by_one(name: str, ends: list[tuple[int | None, JobState]],
                                     used_after: int, stopped: list[int],
                                     still_running: bool) -> None:
    core = new_core(2)
    core.handle(SubmitJob(job=JobSpec(job_id="g", gpus=8, gang=2)))
    placed = [m for m in core.cycle() if isinstance(m, Placement)]
    assert sorted(p.node for p in placed) == ["n0", "n1"], name
    on = {p.member: p.node for p in placed}
    stops: list[str] = []
    for member, state in ends:
        node = on[member] if member is not None else None
        out = core.handle(JobEvent(job_id="g", state=state, member=member, node=node,
                                   source="executor"))
        stops += [m.node for m in out if isinstance(m, StopJob)]
    assert int(core.cluster.used.sum()) == used_after * 1000, name
    assert sorted(stops) == sorted(on[m] for m in stopped), name  # the nodes of those members
    assert ("g" in core.running) is still_running, name
