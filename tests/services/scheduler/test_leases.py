"""Node leases and start timeouts in the core, on a fake clock: a silent node goes offline, its
jobs are lost, stopped, freed and queued again (up to max_attempts); a placement not started in
time is retried on another node."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from sched_builders import make_node

from gpufleet.contracts import (
    CancelJob,
    JobEvent,
    JobSpec,
    JobState,
    Message,
    Placement,
    StopJob,
    SubmitJob,
)
from services.scheduler.config import SchedulerSettings
from services.scheduler.core import Leases, SchedulerCore
from services.scheduler.profile import build_profile
from services.scheduler.snapshot import snapshot

LEASE = Leases(node_lease_s=30, start_timeout_s=60, max_attempts=3)


@dataclass
class Fleet:
    """A core on a fake clock, two 8-GPU nodes, and what it published."""

    leases: Leases = LEASE
    now: float = 1000.0
    out: list[Message] = field(default_factory=list)
    core: SchedulerCore = field(init=False)

    def __post_init__(self) -> None:
        self.core = SchedulerCore(build_profile(SchedulerSettings()), clock=lambda: self.now,
                                  leases=self.leases)
        for name in ("n0", "n1"):
            self.core.handle(make_node(name).inventory())

    def submit(self, job_id: str, gpus: int = 8, gang: int = 1) -> Fleet:
        self.out += self.core.handle(SubmitJob(job=JobSpec(job_id=job_id, gpus=gpus, gang=gang)))
        self.out += self.core.cycle()
        return self

    def at(self, now: float, *alive: str) -> Fleet:
        """Time passes to ``now``; the ``alive`` nodes sent samples just before it."""
        self.now = now - 0.5
        for node in alive:
            self.core.heartbeat(node)
        self.now = now
        self.out += self.core.expire()
        if self.core.dirty:
            self.out += self.core.cycle()
        return self

    def event(self, job_id: str, state: JobState, node: str, attempt: int = 0,
              member: int = 0) -> Fleet:
        self.out += self.core.handle(JobEvent(job_id=job_id, state=state, node=node,
                                              attempt=attempt, member=member, source="executor"))
        return self

    def node_of(self, job_id: str, attempt: int = 0) -> list[str]:
        return [m.node for m in self.out
                if isinstance(m, Placement) and m.job.job_id == job_id and m.attempt == attempt]

    def states(self, job_id: str) -> list[tuple[JobState, int]]:
        return [(m.state, m.attempt) for m in self.out
                if isinstance(m, JobEvent) and m.job_id == job_id]

    def stops(self, job_id: str) -> list[tuple[str, str]]:
        return [(m.node, m.reason) for m in self.out
                if isinstance(m, StopJob) and m.job_id == job_id]


P, Q, L = JobState.PLACED, JobState.QUEUED, JobState.LOST


@pytest.mark.parametrize(("name", "lost"), [
    ("both nodes send samples: nothing is lost", False),
    ("its node is silent past the lease: lost", True),
])
def test_a_silent_node_loses_its_job_and_it_runs_elsewhere(name: str, lost: bool) -> None:
    f = Fleet().submit("j")
    first = f.node_of("j")[0]
    other = "n1" if first == "n0" else "n0"
    for t in (1010, 1020, 1031):
        f.at(t, other, *([] if lost else [first]))
    if not lost:
        assert f.states("j") == [(Q, 0), (P, 0)], name
        return
    assert f.states("j") == [(Q, 0), (P, 0), (L, 0), (Q, 1), (P, 1)], name
    assert f.stops("j") == [(first, "lost")]
    assert f.node_of("j", attempt=1) == [other]  # the dead node is offline
    assert first in f.core.expired
    lost_event = next(m for m in f.out if isinstance(m, JobEvent) and m.state == L)
    assert lost_event.node == first and "lease" in (lost_event.reason or "")


def test_only_the_silent_node_is_taken_offline() -> None:
    f = Fleet().at(1031, "n0")
    assert f.core.expired == {"n1"}
    shown = {n.node: n.online for n in snapshot(f.core, "test", 0.0).nodes}
    assert shown == {"n0": True, "n1": False}


@pytest.mark.parametrize(("name", "max_attempts", "losses", "final"), [
    ("tried again while under max_attempts", 3, 2, P),
    ("given up at max_attempts", 2, 2, L),
    ("max_attempts 1: never tried again", 1, 1, L),
])
def test_max_attempts(name: str, max_attempts: int, losses: int, final: JobState) -> None:
    f = Fleet(Leases(node_lease_s=30, max_attempts=max_attempts)).submit("j")
    t = 1000.0
    for _ in range(losses):
        node = f.node_of("j", f.core.records["j"].attempt)[0]
        t += 31
        f.at(t, *({"n0", "n1"} - {node}))  # the node running it goes silent
        f.at(t + 1, node)  # and comes back: it can take the job again
    assert f.states("j")[-1][0] == final, name
    assert f.core.records["j"].losses == losses
    assert ("j" in f.core.running) is (final == P)
    assert f.core.records["j"].attempt == (losses if final == P else losses - 1)


def test_job_events_count_as_heartbeats() -> None:
    f = Fleet(Leases(node_lease_s=30)).submit("j")
    node = f.node_of("j")[0]
    f.at(1020).event("j", JobState.HEARTBEAT, node).at(1040)
    assert f.core.expired == ({"n0", "n1"} - {node})
    assert "j" in f.core.running


def test_a_node_that_comes_back_takes_jobs_again() -> None:
    f = Fleet(Leases(node_lease_s=30)).at(1031)
    assert f.core.expired == {"n0", "n1"}
    f.submit("j")
    assert f.node_of("j") == []
    f.at(1040, "n1")
    assert f.node_of("j") == ["n1"]


def test_a_placement_not_started_in_time_is_retried_on_another_node() -> None:
    f = Fleet().submit("slow").submit("quick")
    slow, quick = f.node_of("slow")[0], f.node_of("quick")[0]
    f.event("quick", JobState.STARTED, quick)
    for t in range(1010, 1071, 10):
        f.at(t, "n0", "n1")  # both nodes are alive; one never starts its job
    states = f.states("slow")
    assert states[:4] == [(Q, 0), (P, 0), (L, 0), (Q, 1)]
    assert (P, 1) not in states  # the other node is busy, its own node cordoned
    assert f.stops("slow") == [(slow, "lost")]
    assert slow in f.core.cordoned
    assert f.states("quick") == [(Q, 0), (P, 0)]
    f.event("quick", JobState.SUCCEEDED, quick).at(1080, "n0", "n1")
    assert f.node_of("slow", attempt=1) == [quick]  # not back on the node that did not start it


def test_a_gang_is_lost_whole_when_one_member_node_goes() -> None:
    f = Fleet(Leases(node_lease_s=30, max_attempts=1)).submit("g", gpus=8, gang=2)
    assert sorted(f.node_of("g")) == ["n0", "n1"]
    f.at(1031, "n0")
    assert sorted(f.stops("g")) == [("n0", "lost"), ("n1", "lost")]
    assert int(f.core.cluster.used.sum()) == 0 and f.states("g")[-1] == (L, 0)


def test_a_cancel_in_flight_ends_cancelled_not_retried() -> None:
    f = Fleet().submit("j")
    node = f.node_of("j")[0]
    f.out += f.core.handle(CancelJob(job_id="j"))
    f.at(1031, *({"n0", "n1"} - {node}))
    assert f.states("j")[-2:] == [(L, 0), (JobState.CANCELLED, 0)]
    assert "j" not in f.core.pending and "j" not in f.core.running


def test_a_late_report_of_the_lost_attempt_frees_nothing() -> None:
    f = Fleet().submit("j")
    node = f.node_of("j")[0]
    f.at(1031, *({"n0", "n1"} - {node}))
    used = int(f.core.cluster.used.sum())
    f.event("j", JobState.SUCCEEDED, node, attempt=0)  # the node is back and reports attempt 0
    assert int(f.core.cluster.used.sum()) == used == 8000
    assert f.core.running["j"].attempt == 1


def test_leases_off_never_expire() -> None:
    f = Fleet(Leases()).submit("j").at(1_000_000)
    assert not f.core.expired and "j" in f.core.running


@pytest.mark.parametrize(("name", "members", "lost"), [
    ("every member started", [0, 1], False),
    ("one member of two started", [0], True),
    ("an event without a member speaks for all", [None], False),
    ("nothing started", [], True),
])
def test_a_gang_is_started_when_all_its_members_are(
        name: str, members: list[int | None], lost: bool) -> None:
    f = Fleet(Leases(start_timeout_s=60)).submit("g", gpus=8, gang=2)
    for m in members:
        f.out += f.core.handle(JobEvent(job_id="g", state=JobState.STARTED, member=m,
                                        source="executor"))
    f.at(1061)
    assert (L in [s for s, _ in f.states("g")]) is lost, name


def test_every_stop_names_the_attempt_it_stops() -> None:
    f = Fleet().submit("j")
    node = f.node_of("j")[0]
    f.at(1031, *({"n0", "n1"} - {node}))  # attempt 0 lost, attempt 1 placed on the other node
    f.out += f.core.handle(CancelJob(job_id="j"))
    stops = [(m.node, m.reason, m.attempt) for m in f.out if isinstance(m, StopJob)]
    other = f.node_of("j", attempt=1)[0]
    assert stops == [(node, "lost", 0), (other, "cancelled", 1)]


@pytest.mark.parametrize(("name", "max_attempts", "last"), [
    ("retried while under max_attempts", 3, (JobState.PLACED, 1)),
    ("max_attempts 1: given up", 1, (JobState.LOST, 0)),
])
def test_a_job_its_executor_lost_is_lost_like_a_silent_node(
        name: str, max_attempts: int, last: tuple[JobState, int]) -> None:
    f = Fleet(Leases(node_lease_s=30, max_attempts=max_attempts)).submit("j")
    node = f.node_of("j")[0]
    f.event("j", JobState.STARTED, node)
    f.out += f.core.handle(JobEvent(job_id="j", state=JobState.LOST, node=node, attempt=0,
                                    member=0, source="executor",
                                    reason="executor restarted; job lost"))
    f.out += f.core.cycle()
    assert f.states("j")[-1] == last, name
    assert f.core.records["j"].losses == 1
    lost = next(m for m in f.out if isinstance(m, JobEvent) and m.state == L
                and m.source == "scheduler")
    assert "executor restarted" in (lost.reason or "")
    # its GPUs were freed: only the new attempt (if any) holds GPUs
    assert int(f.core.cluster.used.sum()) == (8000 if last[0] == P else 0)
