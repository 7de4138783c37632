"""Running jobs as real processes, each in its own process group, on its own GPUs.

``CUDA_VISIBLE_DEVICES`` names the placed GPUs. A stop sends SIGTERM to the job's process
group and SIGKILL after the grace period if anything of it is left. Output goes to
``<log_dir>/<job>-<member>.log``. Closing the runner leaves the jobs running: a restarted
executor adopts them (see ``state.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from gpufleet.contracts import Placement
from gpufleet.runner import Spawned
from services.executor.core import Key
from services.executor.state import process_start

log = logging.getLogger(__name__)

OnExit = Callable[[Key, int | None], None]
Started = tuple[int | None, int | None]  # (pid, its start time)


class LaunchError(Exception):
    """The job's command could not be started; the message says why."""


class ProcessRunner:
    needs_command = True

    def __init__(self, log_dir: Path, poll_s: float = 0.2) -> None:
        self._log_dir = log_dir
        self._poll_s = poll_s
        self._pids: dict[Key, int] = {}
        self._stopping: dict[Key, float] = {}  # key -> when SIGKILL is due
        self.tasks = Spawned("job watcher")  # the service supervises its watch()

    async def launch(self, key: Key, p: Placement, on_exit: OnExit) -> Started:
        """Start the command; return (pid, its start time)."""
        assert p.job.command
        env = {**os.environ, **p.job.env, "CUDA_VISIBLE_DEVICES": ",".join(map(str, p.gpus)),
               "GPUFLEET_JOB_ID": p.job.job_id, "GPUFLEET_JOB_MEMBER": str(p.member)}
        self._log_dir.mkdir(parents=True, exist_ok=True)
        out = self._log_dir / f"{_safe(key[0])}-{key[1]}.log"
        try:
            with out.open("ab") as f:
                proc = await asyncio.create_subprocess_exec(
                    *p.job.command, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=f,
                    stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            raise LaunchError(f"{p.job.command[0]}: {e.strerror or e}") from e
        except ValueError as e:  # a NUL byte in the command or the env
            raise LaunchError(f"the command or its env cannot be passed to a process: {e}") from e
        self._pids[key] = proc.pid
        self._spawn(self._wait_child(key, proc, on_exit))
        return proc.pid, process_start(proc.pid)

    def adopt(self, key: Key, pid: int, start: int | None, on_exit: OnExit) -> None:
        """Watch a job started by an earlier executor (not our child: polled by pid)."""
        self._pids[key] = pid
        self._spawn(self._watch_adopted(key, pid, start, on_exit))

    def terminate(self, key: Key, grace_s: float) -> None:
        pid = self._pids.get(key)
        if pid is None or key in self._stopping:
            return
        self._stopping[key] = time.monotonic() + grace_s
        _signal_group(pid, signal.SIGTERM)
        self._spawn(self._kill_after(key, pid, grace_s))

    async def _kill_after(self, key: Key, pgid: int, grace_s: float) -> None:
        await asyncio.sleep(grace_s)
        if key in self._stopping:
            self._kill_if_due(key, pgid)

    async def _wait_child(self, key: Key, proc: asyncio.subprocess.Process,
                          on_exit: OnExit) -> None:
        code = await proc.wait()
        await self._until_group_gone(key, proc.pid)
        self._done(key)
        on_exit(key, code)

    async def _watch_adopted(self, key: Key, pid: int, start: int | None,
                             on_exit: OnExit) -> None:
        while True:
            now = process_start(pid)
            if now is None or (start is not None and now != start):
                break
            self._kill_if_due(key, pid)
            await asyncio.sleep(self._poll_s)
        await self._until_group_gone(key, pid)
        self._done(key)
        on_exit(key, None)

    async def _until_group_gone(self, key: Key, pgid: int) -> None:
        """After a stop, wait for the rest of the job's process group (SIGKILL when due)."""
        while key in self._stopping and _group_alive(pgid):
            self._kill_if_due(key, pgid)
            await asyncio.sleep(0.05)

    def _kill_if_due(self, key: Key, pgid: int) -> None:
        due = self._stopping.get(key)
        if due is not None and time.monotonic() >= due:
            log.info("job %s did not stop within its grace period: SIGKILL", key[0])
            _signal_group(pgid, signal.SIGKILL)

    def _done(self, key: Key) -> None:
        self._pids.pop(key, None)
        self._stopping.pop(key, None)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.tasks.spawn(coro)

    async def close(self) -> None:
        """Stop watching; the jobs themselves keep running."""
        await self.tasks.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
