"""Simulated runs: each reports its end exactly once, however soon it is stopped."""

from __future__ import annotations

import asyncio

import pytest

from gpufleet.contracts import JobSpec, Placement
from services.executor.core import Key
from services.executor.runner import LaunchError
from services.executor.simrunner import SimRunner


def _placement(duration: float, env: dict[str, str] | None = None) -> Placement:
    return Placement(job=JobSpec(job_id="a", sim_duration_s=duration, env=env or {}),
                     node="n1", gpus=[0])


@pytest.mark.parametrize(("name", "duration", "stop_after", "code"), [
    ("runs to its end", 0.05, None, 0),
    ("stopped while running", 30.0, 0.05, -15),
    ("stopped before its run took its first step", 30.0, 0.0, -15),
])
async def test_a_run_reports_its_end_once(name: str, duration: float, stop_after: float | None,
                                          code: int) -> None:
    runner = SimRunner()
    ends: list[tuple[Key, int | None]] = []
    await runner.launch(("a", 0), _placement(duration), lambda k, c: ends.append((k, c)))
    if stop_after is not None:
        if stop_after:
            await asyncio.sleep(stop_after)
        runner.terminate(("a", 0), 10.0)  # straight after launch: the task has not run yet
    async with asyncio.timeout(5):
        while not ends:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert ends == [(("a", 0), code)], name
    await runner.close()


async def test_closing_ends_runs_unreported() -> None:
    runner = SimRunner()
    ends: list[tuple[Key, int | None]] = []
    await runner.launch(("a", 0), _placement(30.0), lambda k, c: ends.append((k, c)))
    await asyncio.sleep(0.01)
    await runner.close()
    assert ends == []


async def test_an_exit_code_that_is_not_one_fails_the_launch() -> None:
    with pytest.raises(LaunchError, match="GPUFLEET_SIM_EXIT must be an exit code"):
        await SimRunner().launch(("a", 0), _placement(1.0, {"GPUFLEET_SIM_EXIT": "boom"}),
                                 lambda k, c: None)
