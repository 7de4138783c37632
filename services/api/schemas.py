"""Request and response bodies of the REST API, as msgspec Structs.

Requests are decoded (and so validated) with msgspec; the OpenAPI spec is generated from these
types, so the documentation and the checks cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct, field

from gpufleet.contracts import (
    GPU_MILLI,
    MAX_SECONDS,
    Command,
    CpuMilli,
    Env,
    JobState,
    MemoryMib,
    Name,
)
from services.api.timerange import TimeRange
from services.api.wasteschemas import JobUsage, ReclaimView, RightSizingView

JobId = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
GpuCount = Annotated[int, Meta(ge=1, le=1024)]
Pct = Annotated[float, Meta(ge=0, le=100)]
Duration = Annotated[float, Meta(gt=0, le=MAX_SECONDS)]  # the contract's Seconds, more than 0


class Error(Struct, omit_defaults=True):
    """Every error response: what went wrong and, for bad input, which field."""

    error: str
    field: str | None = None


class SubmitRequest(Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """A job to submit. Without ``job_id`` the api makes one."""

    job_id: JobId | None = None
    tenant: Name | None = None  # a submitter's own tenant when left out
    queue: Name = "default"
    priority: Annotated[int, Meta(ge=-1000, le=1000)] = 0
    gpus: GpuCount = 1
    gpu_milli: Annotated[int, Meta(ge=1, le=GPU_MILLI)] = GPU_MILLI
    gpu_models: Annotated[list[Annotated[str, Meta(min_length=1, max_length=64)]],
                          Meta(max_length=64)] = field(default_factory=list)
    cpu_milli: CpuMilli = 0
    memory_mib: MemoryMib = 0
    gang: Annotated[int, Meta(ge=1, le=1024)] = 1
    est_runtime_s: Duration | None = None
    command: Command | None = None
    env: Env = field(default_factory=dict)
    sim_duration_s: Duration | None = None
    sim_util: Pct | None = None


# What a Struct's fields must satisfy together, in JSON Schema (msgspec writes each field's own
# bounds; these are added to the Struct's component of the OpenAPI document).
TOGETHER: dict[str, dict[str, Any]] = {
    "SubmitRequest": {  # a fraction of a GPU is one GPU
        "if": {"properties": {"gpu_milli": {"exclusiveMaximum": 1000}},
               "required": ["gpu_milli"]},
        "then": {"properties": {"gpus": {"const": 1}}},
    },
}


class CancelRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(max_length=500)] = "cancelled by user"


class Accepted(Struct):
    """A request was put on the bus; the scheduler answers with job events."""

    job_id: str
    state: str


class ModelCount(Struct, kw_only=True):
    model: str
    gpus: int
    free: int
    allocated: int
    busy: int
    unhealthy: int


class ClusterSummary(Struct, kw_only=True):
    cluster: str
    nodes: int
    nodes_online: int
    gpus: int
    gpus_by_model: list[ModelCount]
    gpus_by_state: dict[str, int]
    allocated_share: float  # allocated GPU share (fractions count) over all GPUs, 0..1
    busy_share: float  # mean utilization over all GPUs, 0..1
    queue_depth: int
    running_jobs: int
    idle_allocated_gpus: int  # allocated GPUs below the idle threshold right now
    idle_allocated_gpu_hours: float  # accumulated since this api started
    power_w: float
    open_alerts: int
    decisions_per_s: float
    state_age_s: float | None  # age of the scheduler's snapshot; None when none seen


class GpuView(Struct, kw_only=True, omit_defaults=True):
    index: int
    uuid: str = ""
    model: str = ""
    state: Literal["free", "partial", "allocated", "unhealthy", "unknown"] = "unknown"
    health: str = "ok"
    free_milli: int = GPU_MILLI
    util: float | None = None
    mem_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    power_w: float | None = None
    temp_c: int | None = None
    jobs: list[str] = field(default_factory=list)
    drain: str | None = None  # drained for its health: the cause (xid, ecc, row_remap, lost, ...)
    drain_reason: str | None = None


class NodeView(Struct, kw_only=True):
    node: str
    cluster: str
    online: bool
    model: str
    gpus: list[GpuView]
    sample_age_s: float | None
    labels: dict[str, str] = field(default_factory=dict)
    driver_version: str | None = None


class NodeList(Struct):
    nodes: list[NodeView]


class JobEventView(Struct, kw_only=True, omit_defaults=True):
    ts: float
    state: str
    node: str | None = None
    gpus: list[int] | None = None  # GPU indices on the node
    reason: str | None = None
    source: str = "gpufleet"


class PlacementView(Struct, kw_only=True):
    node: str
    gpus: list[int]  # GPU indices on the node
    gpu_milli: int  # the share of each of those GPUs, thousandths
    member: int  # which member of a gang, from 0
    ts: float


class UtilPoint(Struct, array_like=True):
    ts: float
    util: float


class JobView(Struct, kw_only=True):
    job_id: str
    tenant: str
    queue: str = "default"
    state: JobState
    gpus: int = 1
    gpu_milli: int = GPU_MILLI
    priority: int = 0
    submitted: float | None = None
    updated: float  # the last change of state, placement or spec (heartbeats: ``last_seen``)
    reason: str | None = None  # why the job is in its state; None once it no longer applies
    node: str | None = None
    last_seen: float | None = None  # its executor's latest start or heartbeat; None before


class JobDetail(Struct, kw_only=True):
    job: JobView
    events: list[JobEventView]  # changes of state, oldest first; heartbeats are in last_seen
    placements: list[PlacementView]
    utilization: list[UtilPoint]  # [ts, mean util of the job's GPUs] over time
    util_mean: float | None
    usage: JobUsage | None = None  # measured per GPU (warehouse); None when not known
    usage_note: str | None = None  # why usage is missing, when it is
    rightsizing: RightSizingView | None = None  # asked against used, and the recommendation
    reclaims: list[ReclaimView] = field(default_factory=list)  # idle warnings and reclaims


class JobList(Struct, kw_only=True):
    jobs: list[JobView]
    total: int
    offset: int
    limit: int


class TenantUsage(Struct, kw_only=True):
    tenant: str
    running_jobs: int
    queued_jobs: int
    gpus_used: float  # GPUs in use (fractions count)
    quota: float | None  # GPUs; None when no quota is set
    fair_share: float  # GPUs: an equal (or quota-weighted) split of the fleet among tenants
    share_of_fair: float | None  # gpus_used / fair_share


class QueueUsage(Struct, kw_only=True):
    queue: str
    queued_jobs: int
    queued_gpus: float
    oldest_wait_s: float | None


class TenantList(Struct):
    tenants: list[TenantUsage]


class QueueList(Struct):
    queues: list[QueueUsage]


class HistoryPoint(Struct, kw_only=True):
    ts: float
    key: str
    util_mean: float
    util_max: float
    gpu_hours: float
    idle_allocated_gpu_hours: float
    energy_kwh: float
    gpus: int


class History(Struct, kw_only=True):
    group_by: str
    step: int
    points: list[HistoryPoint]


class AlertView(Struct, kw_only=True, omit_defaults=True):
    alert_id: str
    kind: str
    severity: str
    state: str
    message: str = ""
    node: str | None = None
    gpu: int | None = None
    job_id: str | None = None
    tenant: str | None = None
    since: float | None = None
    ts: float


class AlertList(Struct):
    alerts: list[AlertView]


# Query parameters, one Struct per operation that takes some (documented as parameters).

JobStateName = Literal["submitted", "queued", "placed", "started", "heartbeat", "succeeded",
                       "failed", "preempting", "preempted", "cancelled", "rejected", "lost"]


class JobsQuery(Struct, kw_only=True, forbid_unknown_fields=True):
    tenant: Name | None = None
    state: JobStateName | None = None
    since: Annotated[float, Meta(ge=0)] | None = None  # last update at or after (Unix s)
    until: Annotated[float, Meta(ge=0)] | None = None  # last update before (Unix s)
    offset: Annotated[int, Meta(ge=0, le=1_000_000)] = 0
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100




class HistoryParams(TimeRange, kw_only=True, forbid_unknown_fields=True):
    """A range (default: the last hour, 300 s steps), grouped, optionally filtered."""

    group_by: Literal["gpu", "node", "model", "job", "tenant", "cluster"] = "cluster"
    node: Name | None = None  # only this node
    job_id: Name | None = None  # only this job
    tenant: Name | None = None  # only this tenant


class StreamParams(Struct, kw_only=True, forbid_unknown_fields=True):
    interval: Annotated[float, Meta(ge=0.2, le=60)] | None = None


# The events of the stream, one Struct each (the ``data`` of each server-sent event is JSON).

class FleetEvent(Struct, kw_only=True):
    """``fleet``: everything the dashboard shows, when anything changed."""

    summary: ClusterSummary
    nodes: list[NodeView]
    queued: list[JobView]
    running: list[JobView]
    alerts: list[AlertView]
    tenants: list[TenantUsage]


class AlertChanged(Struct, kw_only=True):
    """``alert``: an alert fired or was resolved (GET /api/v1/alerts for the open ones)."""

    alert_id: str
