"""Recovery: the job records the real core wrote, read back after a restart, give the same
jobs, GPUs, attempts and lease clocks."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from sched_builders import make_job, make_node

from gpufleet.contracts import (
    CancelJob,
    JobEvent,
    JobSpec,
    JobState,
    Message,
    Placement,
    SchedulerJob,
    SubmitJob,
)
from services.scheduler.config import SchedulerSettings
from services.scheduler.core import Leases, SchedulerCore
from services.scheduler.profile import build_profile
from services.scheduler.recovery import latest, records_of, restore

S, E = "scheduler", "executor"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def new_core(clock: Clock, leases: Leases | None = None) -> SchedulerCore:
    core = SchedulerCore(build_profile(SchedulerSettings()), clock=clock, leases=leases)
    core.handle(make_node("n0").inventory())
    return core


@dataclass
class History:
    """A core, everything it published, and its job records as the compacted topic keeps them."""

    clock: Clock = field(default_factory=Clock)
    leases: Leases | None = None
    core: SchedulerCore = field(init=False)
    log: list[Message] = field(default_factory=list)
    states: list[SchedulerJob] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.core = new_core(self.clock, self.leases)

    def _commit(self, out: list[Message]) -> History:
        self.log += out
        self.states += records_of(self.core)  # written in the same transaction
        return self

    def submit(self, spec: JobSpec) -> History:
        return self.feed(SubmitJob(job=spec))

    def feed(self, msg: Message) -> History:
        if isinstance(msg, JobEvent):
            self.log.append(msg)  # an executor's event lands on jobs.events too
        return self._commit(self.core.handle(msg))

    def cycle(self) -> History:
        return self._commit(self.core.cycle())

    def expire(self) -> History:
        return self._commit(self.core.expire())

    def executor(self, job_id: str, state: JobState, attempt: int, member: int = 0) -> History:
        return self.feed(JobEvent(job_id=job_id, state=state, attempt=attempt, source=E,
                                  node="n0", member=member))

    def placed(self, job_id: str) -> bool:
        return any(isinstance(m, Placement) and m.job.job_id == job_id for m in self.log)

    def restart(self) -> History:
        """A fresh core rebuilt from the job records, as the driver's recovery does."""
        again = History(self.clock, self.leases)
        restore(again.core, self.states)
        again.states = list(self.states)
        return again


def preempted(times: int) -> History:
    """J placed, then preempted ``times`` times by a job of priority 100; J waits again."""
    h = History().submit(make_job("J").gpus(8).spec()).cycle()
    assert h.placed("J")
    for i in range(times):
        if i:  # the last preemptor ends; J runs again, as attempt i
            h.executor(f"K{i - 1}", JobState.SUCCEEDED, 0).cycle()
        h.submit(make_job(f"K{i}").gpus(8).priority(100).spec()).cycle()
        h.executor("J", JobState.PREEMPTED, i).cycle()
        assert h.placed(f"K{i}") and "J" in h.core.pending
    return h


@pytest.mark.parametrize(("name", "times"), [
    ("cancelled after one preemption", 1),
    ("cancelled after two preemptions", 2),
])
def test_a_cancelled_job_stays_cancelled_after_a_restart(name: str, times: int) -> None:
    h = preempted(times).feed(CancelJob(job_id="J"))
    again = h.restart()
    assert "J" not in again.core.pending and "J" not in again.core.running, name
    assert again.core.records["J"].state == JobState.CANCELLED
    again.executor(f"K{times - 1}", JobState.SUCCEEDED, 0).cycle()  # the GPUs are free again
    assert not again.placed("J"), name


def test_a_preempted_job_that_is_not_cancelled_runs_again_after_a_restart() -> None:
    again = preempted(1).restart()
    assert "J" in again.core.pending and again.core.records["J"].attempt == 1
    again.executor("K0", JobState.SUCCEEDED, 0).cycle()
    assert again.placed("J")
    assert [m.attempt for m in again.log if isinstance(m, Placement)] == [1]


def test_running_jobs_hold_the_same_gpus_after_a_restart() -> None:
    h = History()
    for spec in (JobSpec(job_id="a", gpus=4), JobSpec(job_id="b", gpus=8),
                 JobSpec(job_id="c", gpus=0), JobSpec(job_id="d", gpu_milli=300)):
        h.submit(spec)
    h.cycle().executor("d", JobState.SUCCEEDED, 0)
    again = h.restart()
    assert set(again.core.running) == {"a"} and set(again.core.pending) == {"b"}
    assert again.core.cluster.used.tolist() == h.core.cluster.used.tolist()
    assert again.core.records["c"].state == JobState.REJECTED
    assert again.core.records["d"].state == JobState.SUCCEEDED
    again.submit(JobSpec(job_id="c"))  # ids of finished and rejected jobs stay taken
    assert "duplicate" in (again.log[-1].reason or "")  # type: ignore[attr-defined]


def test_a_gang_member_that_ended_holds_nothing_after_a_restart() -> None:
    h = History().submit(JobSpec(job_id="g", gpus=4, gang=2)).cycle()
    h.executor("g", JobState.SUCCEEDED, 0, member=0)
    assert int(h.core.cluster.used.sum()) == 4000
    again = h.restart()
    assert again.core.cluster.used.tolist() == h.core.cluster.used.tolist()
    again.executor("g", JobState.SUCCEEDED, 0, member=1)
    assert "g" not in again.core.running and int(again.core.cluster.used.sum()) == 0
    assert again.core.records["g"].state == JobState.SUCCEEDED


def test_the_lease_clocks_go_on_after_a_restart() -> None:
    """A placement not started before the restart is still given up in time after it; a
    started one is not."""
    h = History(leases=Leases(start_timeout_s=60, max_attempts=2))
    h.submit(JobSpec(job_id="slow", gpus=2)).submit(JobSpec(job_id="fine", gpus=2)).cycle()
    h.executor("fine", JobState.STARTED, 0)
    h.clock.now += 50
    again = h.restart()
    again.clock.now += 11
    again.expire()
    lost = [m for m in again.log if isinstance(m, JobEvent) and m.state == JobState.LOST]
    assert [m.job_id for m in lost] == ["slow"]
    assert again.core.records["slow"].losses == 1 and "fine" in again.core.running


def test_the_latest_record_of_a_job_wins() -> None:
    spec = JobSpec(job_id="j")
    old = SchedulerJob(job=spec, state=JobState.QUEUED, seq=3)
    new = SchedulerJob(job=spec, state=JobState.SUCCEEDED, seq=3)
    other = SchedulerJob(job=JobSpec(job_id="i"), state=JobState.QUEUED, seq=1)
    assert latest([old, other, new]) == [other, new]
