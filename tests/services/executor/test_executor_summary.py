"""The executor's periodic line instead of one line per heartbeat: jobs running, started and
ended since the last line, said once per period."""

from __future__ import annotations

import logging

import pytest

from gpufleet.contracts import JobEvent, JobState
from services.executor.driver import Summary


def ev(state: JobState) -> JobEvent:
    return JobEvent(job_id="j", state=state, node="n1", source="executor")


@pytest.mark.parametrize(("name", "events", "at", "running", "line"), [
    ("not due yet", [JobState.STARTED], 59.0, 1, None),
    ("due: counts since the last line", [JobState.STARTED, JobState.HEARTBEAT,
                                         JobState.HEARTBEAT, JobState.SUCCEEDED,
                                         JobState.FAILED, JobState.STARTED], 60.0, 3,
     "node n1: 3 jobs running, 2 started, 2 ended since the last 60 s"),
    ("heartbeats alone are not news", [JobState.HEARTBEAT] * 5, 61.0, 4,
     "node n1: 4 jobs running, 0 started, 0 ended since the last 60 s"),
])
def test_the_summary_line(name: str, events: list[JobState], at: float, running: int,
                          line: str | None) -> None:
    now = [0.0]
    summary = Summary("node n1", every_s=60, clock=lambda: now[0])
    for state in events:
        summary.count(ev(state))
    now[0] = at
    assert summary.due(running) == line, name


def test_the_counts_start_again_after_a_line(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    summary = Summary("fleet", every_s=10, clock=lambda: now[0])
    summary.count(ev(JobState.STARTED))
    with caplog.at_level(logging.INFO, logger="services.executor.driver"):
        for t in (5.0, 10.0, 15.0, 20.0):
            now[0] = t
            summary.say(1)
    assert [r.getMessage() for r in caplog.records] == [
        "fleet: 1 jobs running, 1 started, 0 ended since the last 10 s",
        "fleet: 1 jobs running, 0 started, 0 ended since the last 10 s"]
