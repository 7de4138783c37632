"""Simulated job runs: a job "runs" for its ``sim_duration_s`` and ends with exit code 0.

``GPUFLEET_SIM_EXIT`` in the job's env makes it end with that code instead (an integer from
-255 to 255; anything else fails the job at launch, saying why). A stop ends it at once (as if
SIGTERM worked), with exit code -15.
"""

from __future__ import annotations

import asyncio
import contextlib

from gpufleet.contracts import Placement
from gpufleet.runner import Spawned
from services.executor.core import Key
from services.executor.runner import LaunchError, OnExit, Started

EXIT_VAR = "GPUFLEET_SIM_EXIT"


class SimRunner:
    needs_command = False

    def __init__(self, default_duration_s: float = 60.0, tasks: Spawned | None = None) -> None:
        self._default = default_duration_s
        self.tasks = tasks or Spawned("simulated job")  # the service supervises its watch()
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._stops: dict[Key, asyncio.Event] = {}

    async def launch(self, key: Key, p: Placement, on_exit: OnExit) -> Started:
        duration = p.job.sim_duration_s or p.job.est_runtime_s or self._default
        code = sim_exit_code(p.job.env.get(EXIT_VAR, "0"))
        stopped = self._stops[key] = asyncio.Event()
        self._tasks[key] = self.tasks.spawn(self._run(key, duration, code, stopped, on_exit))
        return None, None

    async def _run(self, key: Key, duration: float, code: int, stopped: asyncio.Event,
                   on_exit: OnExit) -> None:
        # A stop is an event the run waits on, not a cancel: a task cancelled before its
        # first step never runs its handler, and its job would never report an end.
        # Cancelling is left to ``close`` (the executor is going away: the job ends unreported).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                await stopped.wait()
                code = -15
        self._tasks.pop(key, None)
        self._stops.pop(key, None)
        on_exit(key, code)

    def adopt(self, key: Key, pid: int, start: int | None, on_exit: OnExit) -> None:
        raise NotImplementedError("simulated jobs do not outlive their executor")

    def terminate(self, key: Key, grace_s: float) -> None:
        stopped = self._stops.get(key)
        if stopped is not None:
            stopped.set()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        self._stops.clear()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def sim_exit_code(text: str) -> int:
    """The exit code a simulated job asks for; ``LaunchError`` if it is not one."""
    try:
        code = int(text)
    except ValueError:
        code = None
    if code is None or not -255 <= code <= 255:
        raise LaunchError(f"{EXIT_VAR} must be an exit code from -255 to 255, not {text[:40]!r}")
    return code
