"""Response and query bodies of the closed loop's views: measured usage and right-sizing of a
job, a tenant's waste, reclaim and drain events. msgspec Structs, like ``schemas.py``."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct, field

from services.api.timerange import Step, TimeRange

# A tenant in a path: the contract's Name (1..253 characters) without control characters or
# slashes, so that it can never be mistaken for another path.
TenantName = Annotated[str, Meta(min_length=1, max_length=253, pattern=r"^[^\x00-\x1f\x7f/]+$")]
MAX_RECLAIMS_LISTED = 100
MAX_JOBS_LISTED = 50


class TenantPath(Struct, kw_only=True, forbid_unknown_fields=True):
    tenant: TenantName


class GpuUsage(Struct, kw_only=True):
    """One GPU a job ran on, measured over the job's windows in the warehouse."""

    node: str
    gpu: int
    gpu_hours: float
    util_mean: float  # percent, weighted by window length
    util_max: float
    mem_peak_bytes: int  # the peak of the per-minute memory means
    energy_kwh: float


class JobUsage(Struct, kw_only=True):
    gpus: list[GpuUsage]
    gpu_hours: float
    busy_gpu_hours: float  # windows at or over the idle threshold
    util_mean: float | None
    mem_peak_bytes: int
    energy_kwh: float


class RightSizingView(Struct, kw_only=True):
    """The latest right-sizing report of a job (the ``jobs.rightsizing`` topic, or the
    warehouse's ``v_job_rightsizing`` when the api has not seen it)."""

    job_id: str
    tenant: str | None = None
    final: bool
    gpus_requested: int
    gpus_busy: int
    recommended_gpus: int
    gpu_hours: float
    idle_gpu_hours: float
    util_mean: float
    util_p95: float
    util_max: float
    mem_peak_bytes: int
    recommendation: str
    ts: float
    source: str = "live"  # live: the topic; warehouse: v_job_rightsizing


class RightSizingList(Struct, kw_only=True):
    jobs: list[RightSizingView]
    total: int


class ReclaimView(Struct, kw_only=True, omit_defaults=True):
    """One reclaim message: a warning, a withdrawal or a reclaim request."""

    kind: str  # warn, withdraw, reclaim
    job_id: str
    ts: float
    policy: str
    tenant: str | None = None
    action: str | None = None  # reclaim: requeue or stop
    reclaim_at: float | None = None  # warn: when it will be reclaimed
    idle_since: float
    gpus: list[str] = field(default_factory=list)  # "node/gpu"
    util_mean: float | None = None
    reason: str = ""


class DrainView(Struct, kw_only=True, omit_defaults=True):
    """A GPU drained for its health, or returned."""

    kind: str  # drain, undrain
    cluster: str
    node: str
    gpu: int
    ts: float
    cause: str | None = None
    reason: str = ""
    jobs: list[str] = field(default_factory=list)
    since: float


class WasteParams(TimeRange, kw_only=True, forbid_unknown_fields=True):
    """A range (default: the last 24 hours, hourly steps) of a tenant's waste."""

    step: Step = 3600


class RightSizingQuery(Struct, kw_only=True, forbid_unknown_fields=True):
    tenant: TenantName | None = None
    final: bool | None = None  # only ended jobs (true) or only running ones (false)
    limit: Annotated[int, Meta(ge=1, le=1000)] = 50


class WastePoint(Struct, kw_only=True):
    ts: float
    allocated_gpu_hours: float  # GPU-hours with one of the tenant's jobs on the GPU
    busy_gpu_hours: float  # of those, windows at or over the idle threshold
    idle_gpu_hours: float
    util_mean: float
    energy_kwh: float


class ReclaimedJob(Struct, kw_only=True):
    """One warned idle streak of a job (``v_reclaims``)."""

    job_id: str
    policy: str
    idle_since: float
    warned_at: float | None
    reclaimed_at: float | None
    withdrawn_at: float | None
    action: str | None
    gpus: int
    idle_gpu_hours_reclaimed: float
    reason: str


class WasteTotals(Struct, kw_only=True):
    allocated_gpu_hours: float
    busy_gpu_hours: float
    idle_gpu_hours: float
    busy_share: float | None  # busy over allocated
    energy_kwh: float
    warned_jobs: int
    reclaimed_jobs: int
    idle_gpu_hours_reclaimed: float  # GPU-hours the reclaimed jobs sat idle before the reclaim
    gpus_to_give_back: int  # over the jobs' latest right-sizing reports in the period


class TenantWaste(Struct, kw_only=True):
    tenant: str
    start: int
    end: int
    step: int
    totals: WasteTotals
    series: list[WastePoint]
    reclaims: list[ReclaimedJob]  # newest first, at most MAX_RECLAIMS_LISTED
    jobs: list[RightSizingView]  # the most idle GPU-hours first, at most MAX_JOBS_LISTED
