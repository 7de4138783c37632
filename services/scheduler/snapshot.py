"""The periodic cluster snapshot the API shows (``scheduler.state``)."""

from __future__ import annotations

from gpufleet.contracts import JobState, JobSummary, NodeState, SchedulerState
from services.scheduler.core import SchedulerCore
from services.scheduler.jobs import FULL, Job

MAX_JOBS = 2000  # per list, to keep one snapshot message small


def _summary(core: SchedulerCore, job: Job, state: JobState) -> JobSummary:
    rec = core.records.get(job.job_id)
    run = core.running.get(job.job_id)
    node = gpus = None
    if run is not None and run.slots:
        node = core.cluster.names[run.slots[0].node]
        gpus = list(run.slots[0].gpus)
    return JobSummary(job_id=job.job_id, tenant=job.tenant, state=state, gpus=job.gpus * job.gang,
                      gpu_milli=job.milli, priority=job.priority, queue=job.queue, node=node,
                      gpu_indices=gpus, reason=(rec.reason or None) if rec else None,
                      since=rec.since if rec else None)


def snapshot(core: SchedulerCore, cluster: str, decisions_per_s: float) -> SchedulerState:
    c = core.cluster
    nodes = []
    for n, name in enumerate(c.names):
        count = int(c.exists[n].sum())
        free = [int(x) for x in (FULL - c.used[n, :count]).clip(0)]
        nodes.append(NodeState(node=name, gpus=count, model=c.models[int(c.model[n])],
                               free_milli=free, healthy=[bool(h) for h in c.healthy[n, :count]],
                               online=bool(c.online[n])))
    queued = [_summary(core, j, JobState.QUEUED) for j in list(core.pending.values())[:MAX_JOBS]]
    running = [_summary(core, r.job, JobState.PREEMPTING if r.stopping else JobState.PLACED)
               for r in list(core.running.values())[:MAX_JOBS]]
    return SchedulerState(cluster=cluster, nodes=nodes, queued=queued, running=running,
                          decisions_per_s=decisions_per_s, ts=core.clock())
