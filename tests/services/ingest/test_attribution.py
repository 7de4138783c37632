from __future__ import annotations

import pytest
from ingest_builders import T0, make_event, make_placement

from gpufleet.contracts import JobEvent, JobState
from services.ingest.attribution import JobIndex

END = JobState.SUCCEEDED


def run(job: str, node: str, gpu: int, start: float, end: float | None,
        tenant: str = "t1") -> list[JobEvent]:
    evs = [make_event(job).on(node, gpu).tenant(tenant).at(T0 + start).build()]
    if end is not None:
        evs.append(make_event(job).state(END).at(T0 + end).build())
    return evs


@pytest.mark.parametrize(
    ("name", "events", "window", "owner"),
    [
        ("starts and ends mid-minute", run("a", "n1", 0, 20, 40), 0, "a"),
        ("before it started", run("a", "n1", 0, 70, None), 0, None),
        ("still running", run("a", "n1", 0, 20, None), 120, "a"),
        ("ended before the window", run("a", "n1", 0, 0, 50), 60, None),
        ("other gpu", run("a", "n1", 1, 0, None), 0, None),
        ("other node", run("a", "n2", 0, 0, None), 0, None),
        ("longest overlap wins", run("a", "n1", 0, 0, 10) + run("b", "n1", 0, 15, None), 0, "b"),
        ("longest overlap wins (first)", run("a", "n1", 0, 0, 40) + run("b", "n1", 0, 45, None),
         0, "a"),
        ("end seen before start", list(reversed(run("a", "n1", 0, 20, 40))), 0, "a"),
        ("end before start, next minute", list(reversed(run("a", "n1", 0, 20, 40))), 60, None),
    ],
)
def test_owner_of_a_gpu_minute(name: str, events: list[JobEvent], window: float,
                               owner: str | None) -> None:
    index = JobIndex()
    for ev in events:
        index.on_event(ev)
    got = index.owner("n1", 0, T0 + window, T0 + window + 60)
    assert (got.job_id if got else None) == owner


def test_placement_supplies_node_gpus_and_tenant() -> None:
    index = JobIndex()
    index.on_placement(make_placement("a", "n1", 2, 3, tenant="research"))
    index.on_event(make_event("a").at(T0 + 5).build())  # executor's started, no node given
    got = index.owner("n1", 3, T0, T0 + 60)
    assert got is not None and (got.job_id, got.tenant) == ("a", "research")


def test_ended_runs_are_pruned_after_retention() -> None:
    index = JobIndex(retention_s=100)
    for ev in run("a", "n1", 0, 0, 10) + run("b", "n1", 0, 500, 510):
        index.on_event(ev)
    assert [r.job_id for r in index.runs.values()] == ["b"]
    assert index.owner("n1", 0, T0, T0 + 60) is None
