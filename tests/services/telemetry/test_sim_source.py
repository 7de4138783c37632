"""A simulated node's GPUs follow the jobs its executor runs on them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gpufleet.contracts import JobSpec, Message, Placement
from gpufleet.running import file_load
from services.executor.core import ExecutorCore
from services.executor.state import StateFile
from services.fleet.config import FleetSettings
from services.fleet.core import Fleet
from services.telemetry.sources import Due
from services.telemetry.sources.sim import SimSource, xids_of


class ListOutbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Message]] = []

    def send(self, name: str, msg: Message) -> None:
        self.sent.append((name, msg))


def placement(node: str, gpus: list[int], util: float | None = 90.0, seconds: float = 30.0,
              milli: int = 1000, job: str = "j1") -> Placement:
    return Placement(job=JobSpec(job_id=job, sim_duration_s=seconds, sim_util=util),
                     node=node, gpus=gpus, gpu_milli=milli)


def utils(source: SimSource) -> list[float]:
    return [g.util_gpu or 0.0 for g in source.read(time.time(), Due()).gpus]


@pytest.mark.parametrize(("jobs", "expect"), [
    ([], {}),
    ([placement("n", [0, 1], util=90)], {0: 90, 1: 90}),
    ([placement("n", [3], util=None)], {3: 85}),  # no sim_util: a busy default
    ([placement("n", [2], util=80, milli=500, job="a"),
      placement("n", [2], util=60, milli=500, job="b")], {2: 70}),  # a shared GPU
])
def test_utilization_follows_the_running_jobs(
    jobs: list[Placement], expect: dict[int, float]
) -> None:
    core = ExecutorCore(node="n", gpus=8, needs_command=False)
    for p in jobs:
        core.on_placement(p, p.ts)
    source = SimSource("n", 8, load=core.gpu_load, seed=1)
    for i, u in enumerate(utils(source)):
        want = expect.get(i, 0.0)
        assert abs(u - want) <= 3.0 if want else u <= 1.0, (i, u)


def test_power_memory_and_temperature_rise_with_load() -> None:
    core = ExecutorCore(node="n", gpus=2, needs_command=False)
    core.on_placement(placement("n", [1]), time.time())
    source = SimSource("n", 2, model="A100-80GB", load=core.gpu_load, seed=2)
    source.read(time.time(), Due())
    idle, busy = source.read(time.time() + 1, Due()).gpus
    assert (busy.power_mw or 0) > (idle.power_mw or 0) * 3
    assert (busy.mem_used_bytes or 0) > (idle.mem_used_bytes or 0) * 10
    assert (busy.temp_c or 0) > (idle.temp_c or 0)
    assert (busy.energy_mj or 0) > (idle.energy_mj or 0) > 0


async def test_a_fleet_node_goes_busy_then_idle_as_its_job_runs() -> None:
    fleet = Fleet(FleetSettings(sim_nodes=2, sim_gpus_per_node=4, sim_models="H100-80GB"),
                  ListOutbox(), state_dir=None)
    node = fleet.nodes["sim-0001"]
    await fleet.dispatch(placement("sim-0001", [0, 2], util=95, seconds=0.3))
    running = node.telemetry.tick(time.time()).sample.gpus
    assert [round(g.util_gpu or 0) >= 90 for g in running] == [True, False, True, False]
    other = fleet.nodes["sim-0000"].telemetry.tick(time.time()).sample.gpus
    assert all((g.util_gpu or 0) <= 1 for g in other)
    async with asyncio.timeout(5):
        while node.executor.core.jobs:
            await asyncio.sleep(0.05)
    assert all((g.util_gpu or 0) <= 1 for g in node.telemetry.tick(time.time()).sample.gpus)
    await fleet.close()


def test_a_standalone_sim_node_reads_the_executors_state_file(tmp_path: Path) -> None:
    core = ExecutorCore(node="n", gpus=4, needs_command=False)
    state = StateFile(tmp_path / "n.json")
    source = SimSource("n", 4, load=file_load(state.path), seed=3)
    assert max(utils(source)) <= 1.0  # no file yet: idle
    core.on_placement(placement("n", [1], util=70), time.time())
    state.save("n", core.jobs.values())
    assert abs(utils(source)[1] - 70) <= 3.0


def xid_job(xid: str, gpus: list[int], attempt: int = 0) -> Placement:
    return Placement(job=JobSpec(job_id="x", env={"GPUFLEET_SIM_XID": xid}), node="n",
                     gpus=gpus, attempt=attempt)


@pytest.mark.parametrize(("name", "jobs", "expect"), [
    ("no job asks", [placement("n", [0])], {}),
    ("the job's first GPU fails", [xid_job("48", [2, 3])], {2: 48}),
    ("a later attempt runs on", [xid_job("48", [2], attempt=1)], {}),
    ("not a number: ignored", [xid_job("boom", [0])], {}),
    ("a digit int() cannot read: ignored", [xid_job("\u00b2", [0])], {}),
    ("larger than an XID field: ignored", [xid_job("4294967296", [0])], {}),
])
def test_a_job_can_make_its_first_gpu_report_an_xid(name: str, jobs: list[Placement],
                                                     expect: dict[int, int]) -> None:
    assert xids_of(jobs) == expect, name
    source = SimSource("n", gpus=4, xids=lambda: xids_of(jobs))
    events = source.read(time.time(), Due()).events
    assert [(e.gpu, e.kind, e.reason) for e in events] == [
        (g, "xid", f"XID {x}") for g, x in expect.items()]
