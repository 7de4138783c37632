"""The scheduler's own record of every job, and rebuilding its state from those records.

Every transaction that changes a job also writes the job's record (``SchedulerJob``) to the
compacted topic ``scheduler.jobs``, keyed by job id, together with its output and the input
offsets it consumed. So after a restart (once the transactional producer has fenced any older
instance and aborted its open transaction) the state is: the node inventory (``nodes``,
compacted) and the latest record of each job (``scheduler.jobs``, compacted), both read to
their end with ``read_committed``; the inputs go on from their committed offsets. Both topics
keep one record per key whatever their retention, so recovery is complete for a job of any
age, and bounded by the number of nodes and jobs, not by the history.
"""

from __future__ import annotations

from collections.abc import Iterable

from gpufleet.contracts import JobSlot, JobState, SchedulerJob
from services.scheduler.cluster import Slot
from services.scheduler.core import Record, SchedulerCore
from services.scheduler.jobs import from_spec


def record_of(core: SchedulerCore, job_id: str) -> SchedulerJob:
    """What the scheduler knows of one job now, as its state topic keeps it."""
    rec = core.records[job_id]
    spec = rec.job.spec
    assert spec is not None, "every job is built from its spec"
    out = SchedulerJob(job=spec, state=rec.state, seq=rec.job.seq, attempt=rec.attempt,
                       losses=rec.losses, reason=rec.reason, since=rec.since,
                       cancelling=rec.cancelling, ts=core.clock())
    run = core.running.get(job_id)
    if run is not None:
        out.attempt = run.attempt
        # A lent slot holds no share in the model; its record keeps the job's share.
        out.slots = [JobSlot(node=core.cluster.names[s.node], gpus=list(s.gpus),
                             gpu_milli=s.milli or rec.job.milli, lent=s.milli == 0)
                     for s in run.slots]
        out.placed_at = run.started_at
        out.started = sorted(core.started.get(job_id, ()))
        out.ended = sorted(core.ended.get(job_id, ()))
        out.stopping, out.borrowed = run.stopping, run.borrowed
    return out


def records_of(core: SchedulerCore) -> list[SchedulerJob]:
    """The records of every job changed since the last call."""
    return [record_of(core, job_id) for job_id in core.take_touched() if job_id in core.records]


def latest(records: Iterable[SchedulerJob]) -> list[SchedulerJob]:
    """The last record of each job (a compacted topic may still hold older ones), in arrival
    order."""
    last = {r.job.job_id: r for r in records}
    return sorted(last.values(), key=lambda r: r.seq)


def restore(core: SchedulerCore, records: Iterable[SchedulerJob]) -> None:
    """Put the jobs of ``records`` back into ``core`` (its nodes must be there already):
    jobs with slots hold their GPUs again, queued jobs wait, the rest are remembered (their ids
    are taken)."""
    for r in latest(records):
        job = from_spec(r.job, r.since, r.seq)
        core.seq = max(core.seq, r.seq + 1)
        core.records[job.job_id] = Record(job, r.state, r.reason, r.attempt, r.since, r.losses,
                                          r.cancelling)
        if r.slots:
            index = core.cluster.index
            slots = [Slot(index[s.node], tuple(s.gpus), 0 if s.lent else s.gpu_milli,
                          job.cpu_milli, job.memory_mib) for s in r.slots if s.node in index]
            core.hold(job, slots, r.attempt, r.borrowed, since=r.placed_at)
            core.running[job.job_id].stopping = r.stopping
            if r.started:
                core.started[job.job_id] = set(r.started)
            ended = {m for m in r.ended if m < len(slots)} if len(slots) == len(r.slots) else set()
            for m in sorted(ended):  # a gang member that ended before the restart holds nothing
                core.cluster.release(slots[m])
            if ended:
                core.ended[job.job_id] = ended
        elif r.state == JobState.QUEUED:
            core.pending[job.job_id] = job
    core.touched.clear()
    core.dirty = True
