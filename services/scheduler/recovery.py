"""Rebuilding the scheduler's state after a restart, from what it committed.

The scheduler's state is a function of the requests it consumed and of its own committed
output. So on start (after its transactional producer has fenced any older instance and
aborted its open transaction) it reads, with ``read_committed``:

1. ``nodes`` from the beginning (the inventory, a compacted topic);
2. ``jobs.requests`` from the beginning up to its committed offset (the specs it accepted);
3. ``jobs.placements`` and ``jobs.events`` from the beginning to the end (what it decided and
   what happened to each job since).

``restore`` folds each job's events into its state now: rejected or finished jobs are only
remembered (a second submit with their id is a duplicate); placed jobs hold their GPUs again,
from their placements of the current attempt; the rest wait in the queue. Input read again
after this point is harmless: job events free GPUs only for the attempt they name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from gpufleet.contracts import (
    DUPLICATE_JOB_ID,
    JobEvent,
    JobSpec,
    JobState,
    Message,
    Placement,
    StopJob,
)
from services.scheduler.cluster import Slot
from services.scheduler.core import SOURCE, Record, SchedulerCore
from services.scheduler.jobs import from_spec

DONE = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.REJECTED}


def fold(events: Iterable[JobEvent]) -> tuple[JobState, int]:
    """A job's state and attempt after its events, in order.

    An executor's end of a job counts only for the attempt it ran (or a later one); the
    scheduler's own end of a job (a cancel while queued, a rejection) always counts: it
    may have been written with an older attempt number than the job's.
    """
    state, attempt = JobState.QUEUED, 0
    for ev in events:
        if ev.state == JobState.REJECTED and (ev.reason or "").startswith(DUPLICATE_JOB_ID):
            continue
        if ev.state in DONE and (ev.source == SOURCE or ev.attempt >= attempt):
            state = ev.state
        elif ev.state == JobState.PLACED:
            state, attempt = JobState.PLACED, ev.attempt
        elif ev.state == JobState.PREEMPTING and state == JobState.PLACED:
            state = JobState.PREEMPTING
        elif ev.state == JobState.PREEMPTED and ev.attempt == attempt and state in (
                JobState.PLACED, JobState.PREEMPTING):
            state, attempt = JobState.QUEUED, attempt + 1
    return state, attempt


def restore(core: SchedulerCore, specs: Sequence[JobSpec],
            commands: Mapping[str, list[Message]], events: Mapping[str, list[JobEvent]]) -> None:
    """Put the jobs of ``specs`` (in submit order) back into ``core``."""
    for spec in specs:
        if spec.job_id in core.records:
            continue
        job = from_spec(spec, core.clock(), core.seq)
        core.seq += 1
        state, attempt = fold(events.get(spec.job_id, ()))
        core.records[spec.job_id] = Record(job, state, attempt=attempt, since=core.clock())
        if state == JobState.QUEUED:
            core.pending[spec.job_id] = job
        elif state in (JobState.PLACED, JobState.PREEMPTING):
            mine = commands.get(spec.job_id, [])
            slots = [Slot(core.cluster.index[p.node], tuple(p.gpus), p.gpu_milli, job.cpu_milli,
                          job.memory_mib)
                     for p in mine if isinstance(p, Placement) and p.attempt == attempt
                     and p.node in core.cluster.index]
            core.hold(job, slots, attempt)
            stopped = bool(mine) and isinstance(mine[-1], StopJob)
            core.running[spec.job_id].stopping = stopped or state == JobState.PREEMPTING
    core.dirty = True
