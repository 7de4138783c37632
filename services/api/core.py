"""Views of the live state as API responses. Pure: state and clock in, response structs out."""

from __future__ import annotations

from collections import Counter, defaultdict

from gpufleet.contracts import (
    GPU_MILLI,
    TERMINAL_STATES,
    GpuHealth,
    JobState,
    NodeInventory,
)
from services.api.schemas import (
    AlertList,
    AlertView,
    ClusterSummary,
    GpuView,
    JobDetail,
    JobEventView,
    JobList,
    JobView,
    ModelCount,
    NodeView,
    PlacementView,
    QueueList,
    QueueUsage,
    TenantList,
    TenantUsage,
    UtilPoint,
)
from services.api.state import JobRecord, LiveState
from services.api.wasteschemas import ReclaimView, RightSizingView

ALLOCATED_STATES = ("partial", "allocated")


def _gpu_state(free_milli: int, healthy: bool) -> str:
    if not healthy:
        return "unhealthy"
    if free_milli >= GPU_MILLI:
        return "free"
    return "allocated" if free_milli <= 0 else "partial"


def _node_names(state: LiveState) -> list[str]:
    names = set(state.inventory) | set(state.samples)
    if state.scheduler is not None:
        names |= {n.node for n in state.scheduler.nodes}
    return sorted(names)


def node_view(state: LiveState, node: str) -> NodeView:
    """One node: inventory, the scheduler's view of its GPUs and the latest sample, joined."""
    inv = state.inventory.get(node)
    sched = next((n for n in state.scheduler.nodes if n.node == node), None) \
        if state.scheduler else None
    sample, seen = state.samples.get(node, (None, None))
    infos = {g.index: g for g in inv.gpus} if inv else {}
    samples = {g.index: g for g in sample.gpus} if sample else {}
    count = max([len(infos), sched.gpus if sched else 0, len(samples)])
    jobs: dict[int, list[str]] = defaultdict(list)
    for job_id, indices in state.running_on.get(node, {}).items():
        for i in indices:
            jobs[i].append(job_id)
    gpus: list[GpuView] = []
    for i in range(count):
        info, s = infos.get(i), samples.get(i)
        drain = state.loop.drain_of(node, i)
        health = info.health.value if info else GpuHealth.OK.value
        if sched is not None and i < len(sched.free_milli):
            free, healthy = sched.free_milli[i], sched.healthy[i] and health != "lost"
        else:
            free, healthy = (0 if jobs.get(i) else GPU_MILLI), health == GpuHealth.OK.value
        gpus.append(GpuView(
            index=i, uuid=(info.uuid if info else s.uuid if s else ""),
            model=(info.model if info else sched.model if sched else ""),
            state=_gpu_state(free, healthy), health=health, free_milli=free,  # type: ignore[arg-type]
            util=s.util_gpu if s else None, mem_used_bytes=s.mem_used_bytes if s else None,
            memory_total_bytes=info.memory_total_bytes if info else None,
            power_w=s.power_mw / 1000 if s and s.power_mw is not None else None,
            temp_c=s.temp_c if s else None, jobs=sorted(jobs.get(i, [])),
            drain=str(drain.cause) if drain else None, drain_reason=drain.reason if drain else None,
        ))
    return NodeView(
        node=node, cluster=_cluster_of(inv, sample), online=inv.online if inv else True,
        model=(gpus[0].model if gpus else ""), gpus=gpus,
        sample_age_s=(state.clock() - seen) if seen is not None else None,
        labels=dict(inv.labels) if inv else {}, driver_version=inv.driver_version if inv else None,
    )


def _cluster_of(inv: NodeInventory | None, sample: object | None) -> str:
    if inv is not None:
        return inv.cluster
    return str(getattr(sample, "cluster", ""))


def node_list(state: LiveState) -> list[NodeView]:
    return [node_view(state, n) for n in _node_names(state)]


def cluster_summary(state: LiveState, cluster: str) -> ClusterSummary:
    nodes = node_list(state)
    gpus = [g for n in nodes for g in n.gpus]
    by_model: dict[str, Counter[str]] = defaultdict(Counter)
    for g in gpus:
        c = by_model[g.model or "unknown"]
        c["gpus"] += 1
        c[g.state] += 1
        c["busy"] += int(g.util is not None and g.util >= state.idle_util_pct)
    total = len(gpus)
    allocated = sum((GPU_MILLI - g.free_milli) / GPU_MILLI for g in gpus if g.state != "unhealthy")
    utils = [g.util for g in gpus if g.util is not None]
    snap = state.scheduler
    idle = [g for g in gpus if g.state in ALLOCATED_STATES and g.util is not None
            and g.util < state.idle_util_pct]
    return ClusterSummary(
        cluster=snap.cluster if snap else cluster,
        nodes=len(nodes), nodes_online=sum(n.online for n in nodes), gpus=total,
        gpus_by_model=[
            ModelCount(model=m, gpus=c["gpus"], free=c["free"],
                       allocated=c["allocated"] + c["partial"], busy=c["busy"],
                       unhealthy=c["unhealthy"])
            for m, c in sorted(by_model.items())
        ],
        gpus_by_state=dict(sorted(Counter(g.state for g in gpus).items())),
        allocated_share=round(allocated / total, 4) if total else 0.0,
        busy_share=round(sum(utils) / 100 / total, 4) if total else 0.0,
        queue_depth=len(snap.queued) if snap else _count(state, JobState.QUEUED),
        running_jobs=len(snap.running) if snap else _count_running(state),
        idle_allocated_gpus=len(idle),
        idle_allocated_gpu_hours=round(state.idle_gpu_seconds / 3600, 4),
        power_w=round(sum(g.power_w or 0.0 for g in gpus), 1),
        open_alerts=len(state.alerts),
        decisions_per_s=snap.decisions_per_s if snap else 0.0,
        state_age_s=(state.clock() - state.scheduler_seen) if state.scheduler_seen else None,
    )


def _count(state: LiveState, s: JobState) -> int:
    return sum(1 for r in state.jobs.values() if r.state is s)


def _count_running(state: LiveState) -> int:
    return sum(1 for r in state.jobs.values()
               if r.state in (JobState.PLACED, JobState.STARTED, JobState.HEARTBEAT,
                              JobState.PREEMPTING))


def job_view(r: JobRecord) -> JobView:
    return JobView(job_id=r.job_id, tenant=r.tenant, queue=r.queue, state=r.state, gpus=r.gpus,
                   gpu_milli=r.gpu_milli, priority=r.priority, submitted=r.submitted,
                   updated=r.updated, reason=r.reason, node=r.node, last_seen=r.last_seen)


def job_detail(r: JobRecord, rightsizing: RightSizingView | None = None,
               reclaims: list[ReclaimView] | None = None) -> JobDetail:
    points = [UtilPoint(ts=t, util=round(u, 2)) for t, u in r.util]
    return JobDetail(
        job=job_view(r),
        events=[JobEventView(ts=e.ts, state=e.state.value, node=e.node, gpus=e.gpus,
                             reason=e.reason, source=e.source) for e in r.events],
        placements=[PlacementView(node=p.node, gpus=list(p.gpus), gpu_milli=p.gpu_milli,
                                  member=p.member, ts=p.ts) for p in r.placements],
        utilization=points,
        util_mean=round(sum(p.util for p in points) / len(points), 2) if points else None,
        rightsizing=rightsizing, reclaims=reclaims or [],
    )


def list_jobs(state: LiveState, *, tenant: str | None = None, states: set[str] | None = None,
              since: float | None = None, until: float | None = None,
              offset: int = 0, limit: int = 100) -> JobList:
    """Jobs newest first, filtered by tenant, state and last-update time, one page of them."""
    chosen = [
        r for r in reversed(state.jobs.values())
        if (tenant is None or r.tenant == tenant)
        and (states is None or r.state.value in states)
        and (since is None or r.updated >= since) and (until is None or r.updated < until)
    ]
    chosen.sort(key=lambda r: r.updated, reverse=True)
    return JobList(jobs=[job_view(r) for r in chosen[offset:offset + limit]], total=len(chosen),
                   offset=offset, limit=limit)


def _gpu_share(r: JobRecord) -> float:
    return r.gpus * r.gpu_milli / GPU_MILLI


def tenants(state: LiveState, quotas: dict[str, float]) -> TenantList:
    """Usage of each tenant against its quota and its fair share of the fleet's GPUs."""
    running: Counter[str] = Counter()
    queued: Counter[str] = Counter()
    used: dict[str, float] = defaultdict(float)
    for r in state.jobs.values():
        if r.state in (JobState.QUEUED, JobState.SUBMITTED):
            queued[r.tenant] += 1
        elif r.state not in TERMINAL_STATES:
            running[r.tenant] += 1
            used[r.tenant] += _gpu_share(r)
    names = sorted(set(running) | set(queued) | set(quotas))
    total_gpus = sum(len(n.gpus) for n in node_list(state))
    weights = {t: quotas.get(t, 1.0) if quotas else 1.0 for t in names}
    weight_sum = sum(weights.values()) or 1.0
    out = []
    for t in names:
        fair = total_gpus * weights[t] / weight_sum
        out.append(TenantUsage(
            tenant=t, running_jobs=running[t], queued_jobs=queued[t],
            gpus_used=round(used[t], 3), quota=quotas.get(t), fair_share=round(fair, 3),
            share_of_fair=round(used[t] / fair, 3) if fair else None))
    return TenantList(tenants=out)


def queues(state: LiveState) -> QueueList:
    now = state.clock()
    waiting: dict[str, list[JobRecord]] = defaultdict(list)
    for r in state.jobs.values():
        if r.state in (JobState.QUEUED, JobState.SUBMITTED):
            waiting[r.queue].append(r)
    return QueueList(queues=[
        QueueUsage(queue=q, queued_jobs=len(rs), queued_gpus=round(sum(map(_gpu_share, rs)), 3),
                   oldest_wait_s=max((now - r.submitted for r in rs if r.submitted), default=None))
        for q, rs in sorted(waiting.items())
    ])


def alerts(state: LiveState) -> AlertList:
    return AlertList(alerts=[
        AlertView(alert_id=a.alert_id, kind=a.kind, severity=a.severity, state=a.state.value,
                  message=a.message, node=a.node, gpu=a.gpu, job_id=a.job_id, tenant=a.tenant,
                  since=a.since, ts=a.ts)
        for a in state.open_alerts()
    ])
