"""Recovery: what the real core published, folded back after a restart, gives the same jobs."""

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
    StopJob,
    SubmitJob,
)
from services.scheduler.config import SchedulerSettings
from services.scheduler.core import SchedulerCore
from services.scheduler.profile import build_profile
from services.scheduler.recovery import fold, restore

S, E = "scheduler", "executor"


def new_core() -> SchedulerCore:
    core = SchedulerCore(build_profile(SchedulerSettings()), clock=lambda: 100.0)
    core.handle(make_node("n0").inventory())
    return core


@dataclass
class History:
    """A core and everything it consumed and published, as the topics would hold it."""

    core: SchedulerCore = field(default_factory=new_core)
    specs: list[JobSpec] = field(default_factory=list)
    log: list[Message] = field(default_factory=list)

    def submit(self, spec: JobSpec) -> History:
        self.specs.append(spec)
        return self.feed(SubmitJob(job=spec))

    def feed(self, msg: Message) -> History:
        if isinstance(msg, JobEvent):
            self.log.append(msg)  # an executor's event lands on jobs.events too
        self.log += self.core.handle(msg)
        return self

    def cycle(self) -> History:
        self.log += self.core.cycle()
        return self

    def executor(self, job_id: str, state: JobState, attempt: int) -> History:
        return self.feed(JobEvent(job_id=job_id, state=state, attempt=attempt, source=E))

    def placed(self, job_id: str) -> bool:
        return any(isinstance(m, Placement) and m.job.job_id == job_id for m in self.log)

    def events(self, job_id: str) -> list[JobEvent]:
        return [m for m in self.log if isinstance(m, JobEvent) and m.job_id == job_id]

    def restart(self) -> History:
        """A fresh core rebuilt from this history, as the driver's recovery does."""
        commands: dict[str, list[Message]] = {}
        for m in self.log:
            if isinstance(m, Placement | StopJob):
                job_id = m.job.job_id if isinstance(m, Placement) else m.job_id
                commands.setdefault(job_id, []).append(m)
        events = {spec.job_id: self.events(spec.job_id) for spec in self.specs}
        again = History(new_core(), list(self.specs))
        restore(again.core, self.specs, commands, events)
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
    assert fold(h.events("J")) == (JobState.CANCELLED, times), name
    again = h.restart()
    assert "J" not in again.core.pending and "J" not in again.core.running, name
    assert again.core.records["J"].state == JobState.CANCELLED
    again.executor(f"K{times - 1}", JobState.SUCCEEDED, 0).cycle()  # the GPUs are free again
    assert not again.placed("J"), name


def test_a_preempted_job_that_is_not_cancelled_runs_again_after_a_restart() -> None:
    again = preempted(1).restart()
    assert "J" in again.core.pending
    again.executor("K0", JobState.SUCCEEDED, 0).cycle()
    assert again.placed("J")


@pytest.mark.parametrize(("name", "events", "folded"), [
    ("the scheduler's cancel of an older attempt counts",
     [(JobState.PLACED, 0, S), (JobState.PREEMPTED, 0, E), (JobState.CANCELLED, 0, S)],
     (JobState.CANCELLED, 1)),
    ("an executor's cancel of an older attempt does not",
     [(JobState.PLACED, 0, S), (JobState.PREEMPTED, 0, E), (JobState.CANCELLED, 0, E)],
     (JobState.QUEUED, 1)),
    ("an executor's end of the current attempt counts",
     [(JobState.PLACED, 0, S), (JobState.PREEMPTED, 0, E), (JobState.PLACED, 1, S),
      (JobState.FAILED, 1, E)],
     (JobState.FAILED, 1)),
])
def test_fold_by_source(name: str, events: list[tuple[JobState, int, str]],
                        folded: tuple[JobState, int]) -> None:
    evs = [JobEvent(job_id="J", state=s, attempt=a, source=src) for s, a, src in events]
    assert fold(evs) == folded, name
