"""The executor's small state file: the jobs it is running, with their pids.

One JSON file per node, ``<state_dir>/<node>.json``, rewritten atomically on every change. A
restarted executor reads it to report what happened to those jobs; the simulated GPU source of
the same node reads it to know which GPUs are busy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import msgspec

from gpufleet.contracts import Placement
from services.executor.core import RunningJob, gpu_loads


class SavedJob(msgspec.Struct, omit_defaults=True):
    placement: Placement
    since: float
    pid: int | None = None
    pid_start: int | None = None


class Saved(msgspec.Struct, omit_defaults=True):
    node: str
    jobs: list[SavedJob] = msgspec.field(default_factory=list)


_decoder = msgspec.json.Decoder(Saved)


def default_state_dir() -> Path:
    cache = os.environ.get("GPUFLEET_CACHE")
    return Path(cache) / "executor" if cache else Path.cwd() / ".cache" / "executor"


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, node: str, jobs: Iterable[RunningJob]) -> None:
        saved = Saved(node=node, jobs=[SavedJob(placement=j.placement, since=j.since, pid=j.pid,
                                                pid_start=j.pid_start) for j in jobs])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(saved))
        os.replace(tmp, self.path)

    def load(self) -> list[RunningJob]:
        try:
            saved = _decoder.decode(self.path.read_bytes())
        except FileNotFoundError:
            return []
        except msgspec.DecodeError:
            return []  # a torn or foreign file: nothing to recover
        return [RunningJob(placement=j.placement, since=j.since, pid=j.pid,
                           pid_start=j.pid_start) for j in saved.jobs]


def file_load(path: Path) -> Callable[[], Mapping[int, float]]:
    """GPU load (percent by index) from a node's state file, re-read when it changes."""
    seen: list[object] = [None, {}]

    def load() -> Mapping[int, float]:
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return {}
        if mtime != seen[0]:
            seen[0] = mtime
            seen[1] = gpu_loads(j.placement for j in StateFile(path).load())
        found = seen[1]
        return found if isinstance(found, dict) else {}

    return load


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
