"""The running-jobs file of a node: what its executor runs, read by its telemetry.

One JSON file per node, ``<state_dir>/<node>.json``, rewritten atomically on every change. A
restarted executor reads it to report what happened to those jobs; the simulated GPU source of
the same node reads it to know which GPUs are busy. The format lives here, apart from both
services, so that neither imports the other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import msgspec

from gpufleet.contracts import GPU_MILLI, Placement


class SavedJob(msgspec.Struct, omit_defaults=True):
    placement: Placement
    since: float
    pid: int | None = None
    pid_start: int | None = None  # the process's start time, to tell a reused pid apart


class Saved(msgspec.Struct, omit_defaults=True):
    node: str
    jobs: list[SavedJob] = msgspec.field(default_factory=list)


_decoder = msgspec.json.Decoder(Saved)


def default_state_dir() -> Path:
    cache = os.environ.get("GPUFLEET_CACHE")
    return Path(cache) / "executor" if cache else Path.cwd() / ".cache" / "executor"


def write_jobs(path: Path, node: str, jobs: Iterable[SavedJob]) -> None:
    """Replace the file with these jobs (atomically: a reader sees the old or the new list)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.encode(Saved(node=node, jobs=list(jobs))))
    os.replace(tmp, path)


def read_jobs(path: Path) -> list[SavedJob]:
    """The jobs in the file; none when there is no file, or a torn or foreign one."""
    try:
        return _decoder.decode(path.read_bytes()).jobs
    except (FileNotFoundError, msgspec.DecodeError):
        return []


def gpu_loads(placements: Iterable[Placement], default_util: float = 85.0) -> dict[int, float]:
    """How busy each GPU is (percent, by index) with these jobs on it: a job's simulated
    utilization (``default_util`` when it names none) times its share of the GPU."""
    out: dict[int, float] = {}
    for p in placements:
        util = default_util if p.job.sim_util is None else p.job.sim_util
        share = util * p.gpu_milli / GPU_MILLI
        for g in p.gpus:
            out[g] = min(100.0, out.get(g, 0.0) + share)
    return out


def file_load(path: Path) -> Callable[[], Mapping[int, float]]:
    """GPU load (percent by index) from a node's running-jobs file, re-read when it changes."""
    seen: list[object] = [None, {}]

    def load() -> Mapping[int, float]:
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return {}
        if mtime != seen[0]:
            seen[0] = mtime
            seen[1] = gpu_loads(j.placement for j in read_jobs(path))
        found = seen[1]
        return found if isinstance(found, dict) else {}

    return load
