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


def beats(job: str, node: str, gpu: int, *at: float) -> list[JobEvent]:
    return [make_event(job).state(JobState.HEARTBEAT).on(node, gpu).at(T0 + t).build()
            for t in at]


@pytest.mark.parametrize(
    ("name", "events", "window", "owner"),
    [
        ("starts and ends mid-minute", run("a", "n1", 0, 20, 40), 0, "a"),
        ("before it started", run("a", "n1", 0, 70, None), 0, None),
        ("still running", run("a", "n1", 0, 20, None) + beats("a", "n1", 0, 70, 125), 120, "a"),
        # a lone `started` that no placement vouches for ends a lease (60 s) after it
        ("a lone start, past its lease", run("a", "n1", 0, 20, None), 120, None),
        ("a lone start, within its lease", run("a", "n1", 0, 20, None), 60, "a"),
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


def test_a_placed_run_needs_no_heartbeats() -> None:
    index = JobIndex(lease_s=60)
    index.on_placement(make_placement("a", "n1", 0, tenant="t1"))
    index.on_event(make_event("a").at(T0).build())
    got = index.owner("n1", 0, T0 + 3600, T0 + 3660)
    assert got is not None and got.job_id == "a"


def test_a_placement_after_the_start_lifts_the_lease() -> None:
    index = JobIndex(lease_s=60)
    index.on_event(make_event("a").on("n1", 0).at(T0).build())
    index.on_placement(make_placement("a", "n1", 0, tenant="t1"))
    got = index.owner("n1", 0, T0 + 3600, T0 + 3660)
    assert got is not None and got.job_id == "a"


def test_unplaced_silent_runs_and_lone_ends_are_pruned() -> None:
    index = JobIndex(retention_s=100, lease_s=60)
    index.on_event(make_event("ghost").on("n1", 0).at(T0).build())
    index.on_event(make_event("gone").state(END).at(T0).build())  # its start never comes
    index.on_event(make_event("b").on("n1", 1).at(T0 + 500).build())
    index.on_event(make_event("b").state(END).at(T0 + 510).build())
    assert [r.job_id for r in index.runs.values()] == ["b"]
    assert index.ended == {}
