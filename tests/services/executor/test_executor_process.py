"""The executor running real processes: exit codes, GPUs, cancels, refusals, restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gpufleet.contracts import (
    GpuHealth,
    GpuInfo,
    JobEvent,
    JobSpec,
    JobState,
    Message,
    NodeInventory,
    Placement,
    StopJob,
)
from services.executor.core import LOST_REASON, ExecutorCore
from services.executor.driver import NodeExecutor
from services.executor.runner import ProcessRunner
from services.executor.state import StateFile, process_start


class ListOutbox:
    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    def send(self, name: str, msg: Message) -> None:
        assert name == "jobs.events" and isinstance(msg, JobEvent)
        self.events.append(msg)

    def states(self, job_id: str) -> list[JobState]:
        return [e.state for e in self.events if e.job_id == job_id]

    async def until(self, job_id: str, state: JobState, timeout: float = 10) -> JobEvent:
        async with asyncio.timeout(timeout):
            while True:
                for e in self.events:
                    if e.job_id == job_id and e.state == state:
                        return e
                await asyncio.sleep(0.02)


def executor(tmp_path: Path, outbox: ListOutbox) -> NodeExecutor:
    core = ExecutorCore(node="n1", gpus=4, heartbeat_s=0.2)
    return NodeExecutor(core, ProcessRunner(tmp_path / "logs", poll_s=0.05), outbox,
                        StateFile(tmp_path / "n1.json"))


def job(job_id: str, *command: str, gpus: tuple[int, ...] = (0,)) -> Placement:
    return Placement(job=JobSpec(job_id=job_id, command=list(command)), node="n1",
                     gpus=list(gpus))


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[NodeExecutor, ListOutbox]]:
    outbox = ListOutbox()
    ex = executor(tmp_path, outbox)
    yield ex, outbox
    await ex.close()


@pytest.mark.parametrize(("command", "state", "exit_code"), [
    (["sh", "-c", "exit 3"], JobState.FAILED, 3),
    (["true"], JobState.SUCCEEDED, 0),
    (["sh", "-c", 'test "$CUDA_VISIBLE_DEVICES" = "1,3"'], JobState.SUCCEEDED, 0),
    (["sh", "-c", "kill -9 $$"], JobState.FAILED, -9),
])
async def test_a_command_runs_and_its_exit_code_decides_the_outcome(
    node: tuple[NodeExecutor, ListOutbox], command: list[str], state: JobState, exit_code: int
) -> None:
    ex, out = node
    await ex.handle(job("j", *command, gpus=(1, 3)))
    end = await out.until("j", state)
    assert end.exit_code == exit_code
    assert out.states("j") == [JobState.STARTED, state]
    assert end.node == "n1" and end.gpus == [1, 3]


async def test_a_missing_program_fails_with_the_reason(
    node: tuple[NodeExecutor, ListOutbox]
) -> None:
    ex, out = node
    await ex.handle(job("j", "/no/such/program"))
    end = await out.until("j", JobState.FAILED)
    assert "did not start" in (end.reason or "") and ex.core.jobs == {}


async def test_a_gpu_it_does_not_have_is_refused_and_nothing_runs(
    node: tuple[NodeExecutor, ListOutbox], tmp_path: Path
) -> None:
    ex, out = node
    await ex.handle(job("j", "touch", str(tmp_path / "ran"), gpus=(2, 7)))
    [failed] = out.events
    assert failed.state == JobState.FAILED
    assert failed.reason == "GPU 7 is not on node n1 (it has GPUs 0-3)"
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(("inventory_node", "refused"), [("n1", True), ("n2", False)])
async def test_a_gpu_that_telemetry_found_lost_gets_no_new_job(
    node: tuple[NodeExecutor, ListOutbox], inventory_node: str, refused: bool
) -> None:
    ex, out = node
    gpus = [GpuInfo(index=i, uuid=f"GPU-{i}", model="H100", memory_total_bytes=1) for i in range(4)]
    gpus[2].health, gpus[2].health_reason = GpuHealth.LOST, "XID 79"
    await ex.handle(NodeInventory(cluster="c", node=inventory_node, gpus=gpus))
    await ex.handle(job("j", "true", gpus=(2,)))
    first = out.events[0]
    if refused:
        assert (first.state, first.reason) == (JobState.FAILED,
                                               "GPU 2 is not usable: lost (XID 79)")
    else:
        assert first.state == JobState.STARTED
        await out.until("j", JobState.SUCCEEDED)


@pytest.mark.parametrize(("script", "reason", "state", "signalled"), [
    ("touch ready; exec sleep 30", "cancelled", JobState.CANCELLED, -signal.SIGTERM),
    ("trap '' TERM; touch ready; sleep 30 & wait; sleep 30", "preempted", JobState.PREEMPTED,
     -signal.SIGKILL),  # ignores SIGTERM: SIGKILL after the grace period
    # given up by the scheduler (its node was away past the lease): stopped, reported lost
    ("touch ready; exec sleep 30", "lost", JobState.LOST, -signal.SIGTERM),
])
async def test_a_stop_ends_the_job_within_its_grace_period(
    node: tuple[NodeExecutor, ListOutbox], tmp_path: Path, script: str, reason: str,
    state: JobState, signalled: int,
) -> None:
    ex, out = node
    await ex.handle(job("j", "sh", "-c", f"cd {tmp_path} && {script}"))
    started = await out.until("j", JobState.STARTED)
    pid = ex.core.jobs[("j", 0)].pid
    assert pid is not None and started.state == JobState.STARTED
    async with asyncio.timeout(10):
        while not (tmp_path / "ready").exists():
            await asyncio.sleep(0.02)
    await ex.handle(StopJob(job_id="j", node="n1", reason=reason, grace_s=0.5))  # type: ignore[arg-type]
    end = await out.until("j", state, timeout=5)
    assert (end.reason, end.exit_code) == (reason, signalled)
    assert out.states("j") == [JobState.STARTED, state]  # one end, and only that one
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # nothing of the job is left


async def test_a_job_env_no_process_can_take_fails_that_job_and_the_node_goes_on(
    node: tuple[NodeExecutor, ListOutbox],
) -> None:
    ex, out = node
    bad = Placement(job=JobSpec(job_id="bad", command=["true"], env={"X": "a\x00b"}),
                    node="n1", gpus=[0])
    await ex.handle(bad)
    failed = await out.until("bad", JobState.FAILED)
    assert failed.reason is not None and "cannot be passed to a process" in failed.reason
    await ex.handle(job("good", "true"))
    await out.until("good", JobState.SUCCEEDED)


async def test_a_job_given_up_and_placed_here_again_runs_once_the_old_one_is_gone(
    node: tuple[NodeExecutor, ListOutbox],
) -> None:
    ex, out = node
    await ex.handle(job("j", "sleep", "30"))
    await out.until("j", JobState.STARTED)
    await ex.handle(StopJob(job_id="j", node="n1", reason="lost", grace_s=1))
    again = Placement(job=JobSpec(job_id="j", command=["true"]), node="n1", gpus=[0], attempt=1)
    await ex.handle(again)
    done = await out.until("j", JobState.SUCCEEDED)
    assert done.attempt == 1
    assert [(e.state, e.attempt) for e in out.events] == [
        (JobState.STARTED, 0), (JobState.LOST, 0), (JobState.STARTED, 1),
        (JobState.SUCCEEDED, 1)]


async def test_heartbeats_while_running(node: tuple[NodeExecutor, ListOutbox]) -> None:
    ex, out = node
    await ex.handle(job("j", "sleep", "30"))
    await out.until("j", JobState.STARTED)
    await asyncio.sleep(0.25)
    ex.tick()
    assert out.states("j") == [JobState.STARTED, JobState.HEARTBEAT]
    await ex.handle(StopJob(job_id="j", node="n1", grace_s=1))
    await out.until("j", JobState.CANCELLED)


async def test_a_restarted_executor_adopts_live_jobs_and_reports_lost_ones(
    tmp_path: Path,
) -> None:
    first_out = ListOutbox()
    first = executor(tmp_path, first_out)
    await first.handle(job("live", "sleep", "30", gpus=(0,)))
    await first.handle(job("lost", "sleep", "30", gpus=(1,)))
    await first_out.until("lost", JobState.STARTED)
    lost_pid = first.core.jobs[("lost", 0)].pid
    assert lost_pid is not None
    await first.close()  # the executor goes away; its jobs do not
    os.killpg(lost_pid, signal.SIGKILL)  # one dies while no executor watches
    async with asyncio.timeout(5):
        while process_start(lost_pid) is not None:
            await asyncio.sleep(0.02)

    out = ListOutbox()
    second = executor(tmp_path, out)
    second.recover()
    assert [(e.job_id, e.state, e.reason) for e in out.events] == [
        ("lost", JobState.LOST, LOST_REASON)]
    assert list(second.core.jobs) == [("live", 0)]
    await second.handle(StopJob(job_id="live", node="n1", grace_s=1))
    end = await out.until("live", JobState.CANCELLED)
    assert end.exit_code is None  # not our child: its exit status is not ours to read
    await second.close()
    assert StateFile(tmp_path / "n1.json").load() == []


def test_the_executor_command_offers_its_options() -> None:
    done = subprocess.run([sys.executable, "-m", "gpufleet.cli", "executor", "--help"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "--mode" in done.stdout and "--gpus" in done.stdout
