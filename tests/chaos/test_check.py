"""The invariants of the fault suite, case by case over small made-up histories."""

from __future__ import annotations

import pytest

from chaos.check import (
    Alloc,
    allocations,
    check_jobs,
    check_samples,
    dead_node_holds,
    job_outcome,
    over_commits,
)
from gpufleet.contracts import DUPLICATE_JOB_ID, JobEvent, JobSpec, JobState, Placement


def place(job: str, ts: float, node: str = "n0", gpus: tuple[int, ...] = (0,), milli: int = 1000,
          member: int = 0, attempt: int = 0) -> Placement:
    return Placement(job=JobSpec(job_id=job), node=node, gpus=list(gpus), gpu_milli=milli,
                     member=member, attempt=attempt, ts=ts)


def ev(job: str, state: JobState, ts: float, member: int | None = None, attempt: int = 0,
       source: str = "executor", reason: str | None = None) -> JobEvent:
    return JobEvent(job_id=job, state=state, ts=ts, member=member, attempt=attempt,
                    source=source, reason=reason)


S = JobState


@pytest.mark.parametrize(
    ("acked", "stored", "expected"),
    [
        ([("p", 1), ("p", 2)], {("p", 1): 1, ("p", 2): 1}, []),
        ([("p", 1), ("p", 2)], {("p", 1): 1}, [("p", 2, 0)]),
        ([("p", 1)], {("p", 1): 2}, [("p", 1, 2)]),
        ([], {("p", 5): 3}, [("p", 5, 3)]),  # not acknowledged, yet stored three times
        ([], {("p", 5): 1}, []),  # not acknowledged but stored once: fine
    ],
    ids=["all-once", "missing", "twice", "unacked-dup", "unacked-once"],
)
def test_samples(acked: list[tuple[str, int]], stored: dict[tuple[str, int], int],
                 expected: list[tuple[str, int, int]]) -> None:
    assert [(f.node, f.ms, f.stored) for f in check_samples(acked, stored)] == expected


@pytest.mark.parametrize(
    ("events", "placements", "outcome", "dup", "violation"),
    [
        ([ev("j", S.QUEUED, 1, source="scheduler"), ev("j", S.PLACED, 2, 0, source="scheduler"),
          ev("j", S.STARTED, 3, 0), ev("j", S.SUCCEEDED, 4, 0)], [place("j", 2)],
         "finished", 0, None),
        ([ev("j", S.QUEUED, 1, source="scheduler")], [], "queued", 0, None),
        ([ev("j", S.REJECTED, 1, source="scheduler")], [], "rejected", 0, None),
        ([], [], "lost", 0, "job lost (no event at all)"),
        ([ev("j", S.PLACED, 2, 0, source="scheduler"), ev("j", S.STARTED, 3, 0)],
         [place("j", 2)], "unfinished", 0, "job placed but never finished"),
        ([ev("j", S.PLACED, 2, 0, source="scheduler"), ev("j", S.SUCCEEDED, 4, 0)],
         [place("j", 2), place("j", 2.5)], "finished", 1,
         "job placed (or ended) twice for one attempt"),
        ([ev("j", S.SUCCEEDED, 4, 0), ev("j", S.SUCCEEDED, 5, 0)], [place("j", 2)],
         "finished", 1, "job placed (or ended) twice for one attempt"),
        ([ev("j", S.PLACED, 2, 0, source="scheduler"), ev("j", S.LOST, 9, source="scheduler"),
          ev("j", S.QUEUED, 9.1, attempt=1, source="scheduler"),
          ev("j", S.SUCCEEDED, 12, 0, attempt=1)],
         [place("j", 2), place("j", 10, attempt=1)], "finished", 0, None),
        ([ev("j", S.PLACED, 2, 0, source="scheduler"), ev("j", S.LOST, 9, source="scheduler")],
         [place("j", 2)], "given-up", 0, None),
        ([ev("j", S.QUEUED, 1, source="scheduler"),
          ev("j", S.REJECTED, 2, source="scheduler", reason=f"{DUPLICATE_JOB_ID} 'j': ...")],
         [], "queued", 0, None),
    ],
    ids=["finished", "queued", "rejected", "lost", "unfinished", "placed-twice", "ended-twice",
         "lost-then-retried", "given-up", "duplicate-submit-rejection-is-not-the-job's"],
)
def test_job_outcomes(events: list[JobEvent], placements: list[Placement], outcome: str,
                      dup: int, violation: str | None) -> None:
    got = job_outcome("j", 0.0, events, placements)
    assert (got.outcome, got.duplicated, got.violation) == (outcome, dup, violation)


def test_check_jobs_gives_one_outcome_per_acknowledged_submission() -> None:
    got = check_jobs({"a": 1.0, "b": 2.0}, [ev("a", S.QUEUED, 1.1, source="scheduler"),
                                            ev("x", S.QUEUED, 1.2, source="scheduler")], [])
    assert [(o.job_id, o.outcome) for o in got] == [("a", "queued"), ("b", "lost")]


@pytest.mark.parametrize(
    ("placements", "events", "over"),
    [
        ([place("a", 1), place("b", 3)], [ev("a", S.SUCCEEDED, 2, 0)], []),
        ([place("a", 1), place("b", 3)], [ev("a", S.SUCCEEDED, 4, 0)],
         [(3.0, "n0", 0, 2000, ("a", "b"))]),
        ([place("a", 1, milli=500), place("b", 2, milli=500)], [], []),
        ([place("a", 1, milli=500), place("b", 2, milli=600)], [],
         [(2.0, "n0", 0, 1100, ("a", "b"))]),
        ([place("a", 1, gpus=(0, 1)), place("b", 2, gpus=(2, 3))], [], []),
        ([place("a", 1, node="n0"), place("b", 2, node="n1")], [], []),
        # freed at the same moment as the next one is taken: frees go first
        ([place("a", 1), place("b", 2)], [ev("a", S.FAILED, 2, 0)], []),
        # a late end of an earlier attempt does not free the later one
        ([place("a", 1), place("a", 5, attempt=1), place("b", 7)],
         [ev("a", S.LOST, 4, source="scheduler"), ev("a", S.FAILED, 6, 0, attempt=0)],
         [(7.0, "n0", 0, 2000, ("a", "b"))]),
    ],
    ids=["sequential", "overlap", "two-halves", "past-one-gpu", "other-gpus", "other-nodes",
         "same-instant", "attempts-apart"],
)
def test_over_commits(placements: list[Placement], events: list[JobEvent],
                      over: list[tuple[float, str, int, int, tuple[str, ...]]]) -> None:
    got = over_commits(allocations(placements, events))
    assert [(o.at, o.node, o.gpu, o.milli, o.jobs) for o in got] == over


@pytest.mark.parametrize(
    ("alloc", "held"),
    [
        (Alloc("a", 0, 0, "n0", (0,), 1000, 5.0, 30.0), []),  # freed within the limit
        (Alloc("a", 0, 0, "n0", (0,), 1000, 5.0, 60.0), [("a", 50.0)]),
        (Alloc("a", 0, 0, "n0", (0,), 1000, 5.0, None), [("a", 90.0)]),  # never freed
        (Alloc("a", 0, 0, "n9", (0,), 1000, 5.0, None), []),  # a node that did not die
        (Alloc("a", 0, 0, "n0", (0,), 1000, 20.0, None), []),  # placed after the death
        (Alloc("a", 0, 0, "n0", (0,), 1000, 1.0, 8.0), []),  # ended before the death
    ],
    ids=["freed-in-time", "freed-late", "never-freed", "other-node", "after", "before"],
)
def test_dead_node_holds(alloc: Alloc, held: list[tuple[str, float]]) -> None:
    got = dead_node_holds([alloc], died_at=10.0, nodes=frozenset({"n0"}), limit_s=32.0,
                          run_end=100.0)
    assert [(h.job_id, h.held_s) for h in got] == held


def test_a_finding_is_dated_when_it_went_wrong() -> None:
    run5 = Placement(job=JobSpec(job_id="j", sim_duration_s=5.0), node="n0", gpus=[0], ts=2.0)
    unfinished = job_outcome("j", 1.0, [ev("j", S.PLACED, 2, 0, source="scheduler"),
                                        ev("j", S.STARTED, 3, 0)], [run5])
    assert (unfinished.outcome, unfinished.at) == ("unfinished", 8.0)  # started + run time
    twice = job_outcome("j", 1.0, [ev("j", S.SUCCEEDED, 9, 0)], [place("j", 2), place("j", 4)])
    assert twice.at == 4.0  # the second placement
    lost = job_outcome("j", 1.0, [], [])
    assert lost.at == 1.0  # the submission
