"""The executor's small state file: the jobs it is running, with their pids (the file's format
is ``gpufleet.running``, shared with telemetry), and telling whether a saved pid still runs."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from gpufleet.running import SavedJob, read_jobs, write_jobs
from services.executor.core import RunningJob


class StateFile:
    """The executor's view of its running-jobs file (``gpufleet.running``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, node: str, jobs: Iterable[RunningJob]) -> None:
        write_jobs(self.path, node, (SavedJob(placement=j.placement, since=j.since, pid=j.pid,
                                              pid_start=j.pid_start) for j in jobs))

    def load(self) -> list[RunningJob]:
        return [RunningJob(placement=j.placement, since=j.since, pid=j.pid,
                           pid_start=j.pid_start) for j in read_jobs(self.path)]


def process_start(pid: int) -> int | None:
    """The start time of a live process (clock ticks after boot), None if none runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return _alive_without_proc(pid)
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped
        return None
    return int(fields[19])


def _alive_without_proc(pid: int) -> int | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return 0
    return 0 if not Path("/proc/self").exists() else None


def same_process(pid: int | None, start: int | None) -> bool:
    """Whether ``pid`` still names the process that was saved (not a reused pid)."""
    if pid is None:
        return False
    now = process_start(pid)
    return now is not None and (start is None or now == start)
