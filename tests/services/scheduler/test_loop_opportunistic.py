"""Opportunistic jobs through the core: they borrow share that is given out but measured idle,
and are the first to go when its owners get busy. One row per case."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from sched_builders import make_node

from gpufleet.contracts import (
    GpuUtilWindow,
    JobEvent,
    JobSpec,
    JobState,
    Placement,
    SchedulerJob,
    StopJob,
    SubmitJob,
)
from services.executor.core import ExecutorCore
from services.scheduler.config import SchedulerSettings
from services.scheduler.core import SchedulerCore
from services.scheduler.profile import build_profile
from services.scheduler.recovery import record_of, restore

NOW = 10_000.0
ON = {"scheduler_loop": "opportunistic", "scheduler_opportunistic_queues": "spot"}
GIB = 1 << 30


def window(gpu: int, p95: float, mem_gib: float = 1.0, age: float = 0.0) -> GpuUtilWindow:
    return GpuUtilWindow(cluster="test", node="a", gpu=gpu, window_start=NOW - 60 - age,
                         samples=60, util_mean=p95, util_min=0, util_max=p95, util_p95=p95,
                         mem_used_bytes_mean=mem_gib * GIB)


def owned_core(settings: dict[str, str], owner_gpus: int = 2) -> SchedulerCore:
    """Node ``a`` with two GPUs; job ``own`` holds ``owner_gpus`` of them."""
    core = SchedulerCore(build_profile(SchedulerSettings(**settings)), clock=lambda: NOW)
    core.handle(make_node("a").gpus(2).inventory())
    core.handle(SubmitJob(job=JobSpec(job_id="own", gpus=owner_gpus)))
    assert [m for m in core.cycle() if isinstance(m, Placement)]
    return core


def placed(out: list[Any], job: str = "opp") -> list[tuple[list[int], bool]]:
    return [(m.gpus, m.lent) for m in out if isinstance(m, Placement) and m.job.job_id == job]


SPOT = JobSpec(job_id="opp", queue="spot", gpus=1)


@pytest.mark.parametrize(("name", "settings", "job", "windows", "owner_gpus", "expect"), [
    ("borrows the least busy idle GPU", ON, SPOT, [window(0, 8.0), window(1, 2.0)], 2,
     [([1], True)]),
    ("a share borrows too", ON, JobSpec(job_id="opp", queue="spot", gpu_milli=300),
     [window(0, 3.0)], 2, [([0], True)]),
    ("nothing measured: waits", ON, SPOT, [], 2, []),
    ("owners busy: waits", ON, SPOT, [window(0, 30.0), window(1, 12.0)], 2, []),
    ("memory mostly in use: waits", ON, SPOT, [window(0, 1.0, mem_gib=60)], 2, []),
    ("a stale window counts as none", ON, SPOT, [window(0, 1.0, age=3600)], 2, []),
    ("not an opportunistic queue: waits", ON, JobSpec(job_id="opp", queue="prod", gpus=1),
     [window(0, 1.0)], 2, []),
    ("two GPUs: never borrows", ON, JobSpec(job_id="opp", queue="spot", gpus=2),
     [window(0, 1.0), window(1, 1.0)], 2, []),
    ("free share first: placed as usual", ON, SPOT, [window(0, 1.0)], 1, [([1], False)]),
    ("the plugin off: waits", {"scheduler_opportunistic_queues": "spot"}, SPOT,
     [window(0, 1.0)], 2, []),
])
def test_opportunistic_jobs_borrow_idle_allocated_share(
        name: str, settings: dict[str, str], job: JobSpec, windows: list[GpuUtilWindow],
        owner_gpus: int, expect: list[tuple[list[int], bool]]) -> None:
    core = owned_core(settings, owner_gpus)
    for w in windows:
        core.handle(w)
    core.handle(SubmitJob(job=job))
    out = core.cycle()
    assert placed(out) == expect, name
    if expect and expect[0][1]:
        ev = next(m for m in out if isinstance(m, JobEvent) and m.state == JobState.PLACED)
        assert ev.reason is not None and ev.reason.startswith(
            f"opportunistic: on lent GPU {expect[0][0][0]} of a (given out, measured idle")
        assert core.cluster.used[0].tolist() == [1000, 1000]  # the model lends, holds nothing


def borrowing_core() -> SchedulerCore:
    core = owned_core(ON)
    core.handle(window(0, 1.0))
    core.handle(SubmitJob(job=SPOT))
    assert placed(core.cycle()) == [([0], True)]
    return core


@pytest.mark.parametrize(("name", "msg", "stopped"), [
    ("its owners busy again: stopped and requeued", window(0, 70.0, age=-60), True),
    ("busy, but under the threshold", window(0, 40.0, age=-60), False),
    ("an older window, busy, is past", window(0, 90.0, age=60), False),
    ("another GPU busy", window(1, 90.0, age=-60), False),
])
def test_borrowers_are_the_first_to_go(name: str, msg: GpuUtilWindow, stopped: bool) -> None:
    core = borrowing_core()
    out = core.handle(msg)
    assert [(m.job_id, m.reason) for m in out if isinstance(m, StopJob)] == (
        [("opp", "preempted")] if stopped else []), name
    if not stopped:
        return
    why = "opportunistic: the owners of GPU 0 on a are busy again (p95 70 % >= 50 %)"
    assert [m.reason for m in out if isinstance(m, JobEvent)] == [why]
    back = core.handle(JobEvent(job_id="opp", state=JobState.PREEMPTED, node="a", attempt=0,
                                source="executor"))
    assert [m.reason for m in back if isinstance(m, JobEvent)] == [f"{why}; back in its queue"]
    assert placed(core.cycle()) == []  # GPU 0 is busy now, GPU 1 was never measured


def test_one_borrower_per_gpu() -> None:
    core = owned_core(ON)
    core.handle(window(0, 1.0))
    core.handle(window(1, 1.0))
    for i in range(3):
        core.handle(SubmitJob(job=JobSpec(job_id=f"opp{i}", queue="spot", gpus=1)))
    out = core.cycle()
    assert sorted(m.gpus[0] for m in out if isinstance(m, Placement) and m.lent) == [0, 1]
    assert "opp2" in core.pending


def test_a_borrower_is_recovered_holding_no_share() -> None:
    core = borrowing_core()
    record = msgspec.json.decode(msgspec.json.encode(record_of(core, "opp")), type=SchedulerJob)
    assert [(s.gpus, s.gpu_milli, s.lent) for s in record.slots] == [([0], 1000, True)]
    fresh = SchedulerCore(build_profile(SchedulerSettings(**ON)), clock=lambda: NOW)
    fresh.handle(make_node("a").gpus(2).inventory())
    restore(fresh, [record_of(core, "own"), record])
    assert fresh.cluster.used[0].tolist() == [1000, 1000]
    assert [s.milli for s in fresh.running["opp"].slots] == [0]


def test_the_executor_does_not_count_lent_share() -> None:
    ex = ExecutorCore(node="a", gpus=1, heartbeat_s=10, max_placement_age_s=600,
                      needs_command=False)
    owner = Placement(job=JobSpec(job_id="own"), node="a", gpus=[0], ts=NOW)
    lent = Placement(job=JobSpec(job_id="opp"), node="a", gpus=[0], lent=True, ts=NOW)
    assert ex.refusal(owner) is None
    assert ex.on_placement(owner, NOW)
    assert ex.refusal(lent) is None
    assert "0/1000 free" in (ex.refusal(Placement(job=JobSpec(job_id="x"), node="a", gpus=[0],
                                                  ts=NOW)) or "")


@pytest.mark.parametrize(("lend_below", "busy_at", "refused"), [
    (10.0, 50.0, False),
    (50.0, 50.0, True),  # a GPU would lend and take back the same job, window after window
    (60.0, 50.0, True),
])
def test_a_gpu_lends_only_below_where_its_owners_count_as_busy(
        lend_below: float, busy_at: float, refused: bool) -> None:
    from gpufleet.config import ConfigError

    make = lambda: SchedulerSettings(  # noqa: E731
        scheduler_lend_below_util=lend_below, scheduler_owners_busy_util=busy_at)
    if refused:
        with pytest.raises(ConfigError, match="LEND_BELOW_UTIL must be below"):
            make()
    else:
        assert make().scheduler_lend_below_util == lend_below
