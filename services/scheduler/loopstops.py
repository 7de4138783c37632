"""Which running jobs the closed loop stops: reclaim requests and GPU drains, checked against
what the scheduler knows, as pure decisions. The core performs them through its preemption
path (a ``StopJob`` with the reason; requeued or not), so the exactly-once rules of that path
hold for them too.

A reclaim request is acted on only when reclaim is on, the job still runs, is not already
stopping, and runs on the GPUs the request names (a request about an earlier attempt, since
moved, is stale). A drain stops every running job that holds the drained GPU, and requeues it:
the job did nothing wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpufleet.contracts import GpuDrain, ReclaimRequest

from .framework import Running


@dataclass(frozen=True, slots=True)
class LoopStop:
    job_id: str
    requeue: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Ignored:
    job_id: str
    why: str


def gpus_of(run: Running, names: Sequence[str]) -> set[tuple[str, int]]:
    return {(names[s.node], g) for s in run.slots for g in s.gpus}


def reclaim_stops(req: ReclaimRequest, running: Mapping[str, Running], names: Sequence[str],
                  enabled: bool) -> LoopStop | Ignored:
    if not enabled:
        return Ignored(req.job_id, "reclaim is off (the reclaim plugin is not in the profile)")
    run = running.get(req.job_id)
    if run is None:
        return Ignored(req.job_id, "not running (ended, or already moved)")
    if run.stopping:
        return Ignored(req.job_id, "already stopping")
    asked = {(g.node, g.gpu) for g in req.gpus}
    if asked and not asked <= gpus_of(run, names):
        return Ignored(req.job_id, "stale: the job runs on other GPUs now")
    return LoopStop(req.job_id, req.action == "requeue", req.reason)


def drain_stops(drain: GpuDrain, running: Mapping[str, Running],
                names: Sequence[str]) -> list[LoopStop]:
    gpu = (drain.node, drain.gpu)
    return [LoopStop(job_id, True, f"moved off a drained GPU: {drain.reason}")
            for job_id, run in sorted(running.items())
            if not run.stopping and gpu in gpus_of(run, names)]
