"""The framework's shared values: the census of running jobs."""

from __future__ import annotations

import pytest
from sched_builders import make_job

from services.scheduler.framework import Census, Running


def _run(job_id: str, priority: int = 0, tenant: str = "a", borrowed: bool = False,
         gpus: int = 1) -> Running:
    job = make_job(job_id).priority(priority).tenant(tenant).gpus(gpus).build()
    return Running(job, [], 0.0, borrowed=borrowed)


@pytest.mark.parametrize(("name", "runs", "priority", "tenant", "borrowing", "may"), [
    ("nothing runs", [], 5, "a", False, False),
    ("a lower priority runs", [_run("x", 1)], 2, "a", False, True),
    ("only equal or higher", [_run("x", 2), _run("y", 3)], 2, "a", False, False),
    ("another tenant borrows", [_run("x", 2, "b", True)], 2, "a", False, True),
    ("... but the job borrows too", [_run("x", 2, "b", True)], 2, "a", True, False),
    ("its own tenant borrows", [_run("x", 2, "a", True)], 2, "a", False, False),
])
def test_census_says_whether_any_job_may_be_preempted(
        name: str, runs: list[Running], priority: int, tenant: str, borrowing: bool,
        may: bool) -> None:
    job = make_job("vip").priority(priority).tenant(tenant).build()
    assert Census.of(runs).may_preempt(job, borrowing) is may, name


def test_census_counts_jobs_as_they_come_and_go() -> None:
    runs = [_run("x", 1, "a", gpus=2), _run("y", 1, "b", True), _run("z", 3, "b", True)]
    census = Census.of(runs)
    assert (census.priorities, census.borrowing, census.held) == (
        {1: 2, 3: 1}, {"b": 2}, {"a": 2000, "b": 2000})
    for run in runs[1:]:
        census.remove(run)
    assert census == Census.of(runs[:1])  # nothing left at zero
    assert (census.priorities, census.borrowing, census.held) == ({1: 1}, {}, {"a": 2000})
