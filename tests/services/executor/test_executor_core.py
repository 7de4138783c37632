"""The executor's job-state machine, case by case."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from gpufleet.contracts import JobSpec, JobState, Placement, StopJob
from services.executor.core import (
    LOST_REASON,
    Adopt,
    Emit,
    ExecutorCore,
    Launch,
    Outcome,
    RunningJob,
    Terminate,
)

NOW = 1_000_000.0


@dataclass
class PlacementBuilder:
    """``place("j1").gpus(0, 1).milli(500).build()``"""

    job_id: str
    _gpus: list[int] = field(default_factory=lambda: [0])
    _node: str = "n1"
    _milli: int = 1000
    _command: list[str] | None = field(default_factory=lambda: ["true"])
    _ts: float = NOW
    _attempt: int = 0

    def gpus(self, *g: int) -> PlacementBuilder:
        self._gpus = list(g)
        return self

    def node(self, n: str) -> PlacementBuilder:
        self._node = n
        return self

    def milli(self, m: int) -> PlacementBuilder:
        self._milli = m
        return self

    def no_command(self) -> PlacementBuilder:
        self._command = None
        return self

    def attempt(self, n: int) -> PlacementBuilder:
        self._attempt = n
        return self

    def at(self, ts: float) -> PlacementBuilder:
        self._ts = ts
        return self

    def build(self) -> Placement:
        job = JobSpec(job_id=self.job_id, tenant="t1", command=self._command)
        return Placement(job=job, node=self._node, gpus=self._gpus, gpu_milli=self._milli,
                         ts=self._ts, attempt=self._attempt)


def place(job_id: str) -> PlacementBuilder:
    return PlacementBuilder(job_id)


def core(**kw: object) -> ExecutorCore:
    return ExecutorCore(node="n1", gpus=8, heartbeat_s=10, **kw)  # type: ignore[arg-type]


def events(actions: Sequence[object]) -> list[tuple[JobState, str | None]]:
    return [(a.event.state, a.event.reason) for a in actions if isinstance(a, Emit)]


@pytest.mark.parametrize(("p", "says"), [
    (place("a").gpus(9).build(), "GPU 9 is not on node n1 (it has GPUs 0-7)"),
    (place("a").gpus().build(), "the placement names no GPU"),
    (place("a").no_command().build(), "the job has no command to run"),
    (place("a").gpus(1, 1).milli(400).build(), "the placement names a GPU twice"),
])
def test_a_placement_it_cannot_run_is_refused_with_the_reason(p: Placement, says: str) -> None:
    c = core()
    actions = c.on_placement(p, NOW)
    assert events(actions) == [(JobState.FAILED, says)]
    [emit] = actions
    assert isinstance(emit, Emit) and emit.event.node == "n1" and emit.event.job_id == "a"
    assert c.jobs == {}


def test_a_full_gpu_waits_then_fails_and_an_unhealthy_gpu_is_refused() -> None:
    c = core(unhealthy={3: "lost (XID 79)"})
    assert isinstance(c.on_placement(place("a").gpus(2).milli(600).build(), NOW)[0], Launch)
    assert c.on_placement(place("b").gpus(2).milli(500).build(), NOW) == []  # waits for GPU 2
    assert isinstance(c.on_placement(place("c").gpus(2).milli(400).build(), NOW)[0], Launch)
    assert events(c.on_placement(place("d").gpus(3).build(), NOW)) == [
        (JobState.FAILED, "GPU 3 is not usable: lost (XID 79)")]
    assert c.heartbeats(NOW + 29) == []
    assert events(c.heartbeats(NOW + 30)) == [
        (JobState.FAILED, "GPU 2 has 0/1000 free, the job needs 500 (waited 30 s)")]
    assert set(c.jobs) == {("a", 0), ("c", 0)}


@pytest.mark.parametrize("p", [
    place("a").node("other").build(),  # not this node
    place("a").at(NOW - 3600).build(),  # too old: the executor was away
])
def test_placements_that_are_not_for_now_or_here_are_ignored(p: Placement) -> None:
    assert core().on_placement(p, NOW) == []


def test_a_placement_delivered_twice_runs_once() -> None:
    c = core()
    p = place("a").build()
    assert isinstance(c.on_placement(p, NOW)[0], Launch)
    assert c.on_placement(p, NOW) == []
    c.on_started(("a", 0), 42, None, NOW)
    c.on_exit(("a", 0), 0, NOW + 1)
    assert c.on_placement(p, NOW + 2) == []  # already done


@pytest.mark.parametrize(("stop", "code", "state", "exit_code", "reason"), [
    (None, 0, JobState.SUCCEEDED, 0, None),
    (None, 3, JobState.FAILED, 3, "exit code 3"),
    (None, -9, JobState.FAILED, -9, "killed by signal 9"),
    ("cancelled", -15, JobState.CANCELLED, -15, "cancelled"),
    ("preempted", -9, JobState.PREEMPTED, -9, "preempted"),
    ("lost", -15, JobState.LOST, -15, "lost"),
    ("lost", 0, JobState.LOST, 0, "lost"),  # it ended on its own while being stopped
])
def test_how_a_job_ends_decides_its_last_event(
    stop: str | None, code: int, state: JobState, exit_code: int, reason: str | None
) -> None:
    c = core()
    c.on_placement(place("a").gpus(0, 1).build(), NOW)
    [started] = c.on_started(("a", 0), 42, None, NOW)
    assert isinstance(started, Emit) and started.event.state == JobState.STARTED
    assert started.event.gpus == [0, 1] and started.event.tenant == "t1"
    if stop is not None:
        s = StopJob(job_id="a", node="n1", reason=stop, grace_s=2)  # type: ignore[arg-type]
        assert c.on_stop(s, NOW) == [Terminate(("a", 0), 2)]
        assert c.on_stop(s, NOW) == []  # asked once
    [end] = c.on_exit(("a", 0), code, NOW + 5)
    assert isinstance(end, Emit)
    assert (end.event.state, end.event.exit_code, end.event.reason) == (
        state, exit_code, reason)
    assert c.jobs == {}


def test_a_stop_during_start_terminates_once_started() -> None:
    c = core()
    c.on_placement(place("a").build(), NOW)
    assert c.on_stop(StopJob(job_id="a", node="n1"), NOW) == []
    actions = c.on_started(("a", 0), 42, None, NOW)
    assert actions[-1] == Terminate(("a", 0), 10.0)


def test_heartbeats_come_every_interval_for_running_jobs() -> None:
    c = core()
    c.on_placement(place("a").build(), NOW)
    assert c.heartbeats(NOW + 30) == []  # not started yet
    c.on_started(("a", 0), 42, None, NOW)
    assert c.heartbeats(NOW + 5) == []
    assert events(c.heartbeats(NOW + 10)) == [(JobState.HEARTBEAT, None)]
    assert c.heartbeats(NOW + 15) == []


def test_after_a_restart_jobs_are_adopted_or_reported() -> None:
    alive, gone, ended = (RunningJob(placement=place(j).gpus(i).build(), since=NOW, pid=100 + i)
                          for i, j in enumerate(["alive", "gone", "ended"]))
    c = core()
    actions = c.recover([alive, gone, ended], {
        ("alive", 0): Outcome(alive=True), ("ended", 0): Outcome(exit_code=0)}, NOW)
    assert Adopt(("alive", 0), 100) in actions
    assert events(actions) == [(JobState.LOST, LOST_REASON), (JobState.SUCCEEDED, None)]
    assert list(c.jobs) == [("alive", 0)]
    assert c.on_placement(gone.placement, NOW) == []  # a replay does not run it again


def test_a_job_given_up_as_lost_is_stopped_and_reported_lost_whatever_came_before() -> None:
    c = core()
    c.on_placement(place("a").build(), NOW)
    c.on_placement(place("b").gpus(1).build(), NOW)
    c.on_started(("a", 0), 42, None, NOW)
    c.on_started(("b", 0), 43, None, NOW)
    lost = StopJob(job_id="a", node="n1", reason="lost", grace_s=1)
    assert c.on_stop(lost, NOW) == [Terminate(("a", 0), 1)]
    assert events(c.heartbeats(NOW + 60)) == [(JobState.HEARTBEAT, None)]  # only b beats
    # b was being cancelled when the scheduler gave it up: it is reported lost, stopped once
    assert c.on_stop(StopJob(job_id="b", node="n1"), NOW) == [Terminate(("b", 0), 10.0)]
    assert c.on_stop(StopJob(job_id="b", node="n1", reason="lost"), NOW) == []
    assert events(c.on_exit(("b", 0), -15, NOW + 1)) == [(JobState.LOST, "lost")]
    assert events(c.on_exit(("a", 0), 1, NOW + 1)) == [(JobState.LOST, "lost")]
    assert c.jobs == {}


def test_a_job_given_up_before_it_started_is_reported_lost_not_failed() -> None:
    c = core()
    c.on_placement(place("a").build(), NOW)
    assert c.on_stop(StopJob(job_id="a", node="n1", reason="lost"), NOW) == []
    assert events(c.on_launch_failed(("a", 0), "no such file", NOW)) == [(JobState.LOST, "lost")]


@pytest.mark.parametrize(("stop", "then"), [
    ("lost", "launched"),  # given up, placed here again: it starts once the old one ended
    ("cancelled", "launched"),
    (None, "ignored"),  # the old attempt was never stopped: a retry is not for this node now
])
def test_a_later_attempt_waits_for_the_stopped_one_to_end(stop: str | None, then: str) -> None:
    c = core()
    c.on_placement(place("a").gpus(0).build(), NOW)
    c.on_started(("a", 0), 42, None, NOW)
    if stop is not None:
        c.on_stop(StopJob(job_id="a", node="n1", reason=stop), NOW)  # type: ignore[arg-type]
    retry = place("a").gpus(0).attempt(1).build()
    assert c.on_placement(retry, NOW + 1) == []
    end, *rest = c.on_exit(("a", 0), -15, NOW + 2)
    assert isinstance(end, Emit) and end.event.attempt == 0
    if then == "launched":
        assert rest == [Launch(("a", 0), retry)] and c.jobs[("a", 0)].placement.attempt == 1
    else:
        assert rest == [] and c.jobs == {}


def _stop(job: str, reason: str = "lost", attempt: int | None = 0) -> StopJob:
    return StopJob(job_id=job, node="n1", reason=reason, attempt=attempt)  # type: ignore[arg-type]


def test_a_placement_waits_for_the_gpu_a_stopped_job_still_holds() -> None:
    # after a restart the scheduler gave GPU 0 to b while a (given up) still held it here
    c = core()
    c.on_placement(place("a").gpus(0).build(), NOW)
    c.on_started(("a", 0), 42, None, NOW)
    b = place("b").gpus(0).build()
    assert c.on_placement(b, NOW) == []
    assert c.on_placement(b, NOW) == []  # delivered again while waiting: still waits, once
    assert c.on_stop(_stop("a"), NOW + 1) == [Terminate(("a", 0), 10.0)]
    end, launch = c.on_exit(("a", 0), -15, NOW + 2)
    assert isinstance(end, Emit) and end.event.state == JobState.LOST
    assert launch == Launch(("b", 0), b)
    assert c.heartbeats(NOW + 100) == []  # nothing left waiting to fail


@pytest.mark.parametrize(("name", "stop", "touches"), [
    ("a stop of the earlier attempt", _stop("a", attempt=0), False),
    ("a stop of this attempt", _stop("a", attempt=1), True),
    ("a stop that names no attempt (an older sender)", _stop("a", attempt=None), True),
])
def test_a_stop_never_touches_a_later_attempt(name: str, stop: StopJob, touches: bool) -> None:
    c = core()
    c.on_placement(place("a").attempt(1).build(), NOW)
    c.on_started(("a", 0), 42, None, NOW)
    assert (c.on_stop(stop, NOW) == [Terminate(("a", 0), 10.0)]) is touches, name


@pytest.mark.parametrize(("reason", "state"), [
    ("lost", JobState.LOST), ("cancelled", JobState.CANCELLED)])
def test_a_stop_read_before_its_placement_ends_it_unlaunched(reason: str,
                                                              state: JobState) -> None:
    c = core()
    assert c.on_stop(_stop("a", reason), NOW) == []
    assert events(c.on_placement(place("a").build(), NOW)) == [(state, reason)]
    assert c.jobs == {}
    assert isinstance(c.on_placement(place("a").attempt(1).build(), NOW)[0], Launch)


def test_a_waiting_placement_that_is_stopped_ends_without_running() -> None:
    c = core()
    c.on_placement(place("a").gpus(0).build(), NOW)
    assert c.on_placement(place("b").gpus(0).build(), NOW) == []
    assert events(c.on_stop(_stop("b", "cancelled"), NOW)) == [(JobState.CANCELLED, "cancelled")]
    assert c.on_exit(("a", 0), 0, NOW + 1)[1:] == []  # b does not start after a ends
